"""The rate book answers which version was in force when an attempt started."""

from __future__ import annotations

from corral.domain.billing.rate_book import RateBook, RateVersion


def test_the_version_in_force_is_the_newest_that_took_effect_by_then() -> None:
    book = RateBook()
    book.add(RateVersion("cpu/site", 1, 3.6, 100.0))
    book.add(RateVersion("cpu/site", 2, 7.2, 200.0))
    assert book.in_force_at("cpu/site", 50.0) is None  # nothing was priced yet
    found = book.in_force_at("cpu/site", 150.0)
    assert found is not None and (found.version, found.rate) == (1, 3.6)
    found = book.in_force_at("cpu/site", 200.0)
    assert found is not None and found.version == 2
    assert book.in_force_at("memory/site", 150.0) is None


def test_a_changed_rate_is_a_new_version_and_the_old_stays_in_the_history() -> None:
    book = RateBook()
    first, new = book.version_for("cpu/site", 3.6, 10.0)
    assert new and first.version == 1
    same, new = book.version_for("cpu/site", 3.6, 20.0)
    assert not new and same == first
    second, new = book.version_for("cpu/site", 7.2, 30.0)
    assert new and second.version == 2
    assert book.in_force_at("cpu/site", 25.0) == first
