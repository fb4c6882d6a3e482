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


def test_a_charge_row_moved_keeps_every_other_field() -> None:
    from dataclasses import fields, replace

    from corral.store.ledger import ChargeRow

    row = ChargeRow(7, 8, 2, "lab", "alice", [("cpu/site/1", 250), ("memory/site/1", 512)], 1_000, 1_500)
    assert row.moved(2_500, True) == replace(row, accrued_ms=2_500, ended=True)
    assert row.moved(2_500, False) == replace(row, accrued_ms=2_500)
    # moved() names every field: one added later must be added there too (this fails until it is)
    assert [f.name for f in fields(ChargeRow)] == [
        "batch_id", "job_id", "attempt_id", "billing_project", "user", "resources", "start_ms", "accrued_ms",
        "ended",
    ]


def test_the_same_rate_again_keeps_its_version_and_a_new_one_makes_the_next() -> None:
    book = RateBook()
    first, new = book.version_for("cpu/site", 0.04, 100.0)
    assert new and first.version == 1
    again, new = book.version_for("cpu/site", 0.04, 200.0)
    assert again is first and not new
    changed, new = book.version_for("cpu/site", 0.05, 300.0)
    assert new and changed.version == 2 and changed.rate == 0.05
    back, new = book.version_for("cpu/site", 0.04, 400.0)  # back to an old rate: a version of its own
    assert new and back.version == 3
