"""The submission check (domain/capacity.check_placeable): with `pool_choice = "cheapest"` a job naming no
pool is refused only when none of the pools it may be sent to can ever run it."""

from __future__ import annotations

import pytest

from corral.domain.capacity import Resources, SiteCollection, check_placeable
from corral.errors import InvalidInput

GIB = 1 << 30
SITE = {
    "default": SiteCollection("default", "pool", Resources(1000, GIB)),
    "gpu": SiteCollection("gpu", "pool", Resources(8000, 32 * GIB, 1, "a100")),
}


def check(need: Resources, pool: str = "default", *, unnamed: tuple[str, ...] = ()) -> None:
    check_placeable(need, pool, SITE, default_pool="default", where="bunch[0]", unnamed_pools=unnamed)


def test_without_pool_choice_only_the_jobs_own_pool_counts() -> None:
    with pytest.raises(InvalidInput) as err:
        check(Resources(4000, GIB))
    assert err.value.field == "bunch[0].resources"
    assert "pool default's largest instance has 1 core and 1 GiB" in str(err.value)


def test_a_job_naming_no_pool_is_accepted_when_any_pool_it_may_go_to_can_run_it() -> None:
    check(Resources(4000, GIB), unnamed=("gpu",))
    check(Resources(1000, GIB, 1), unnamed=("gpu",))


def test_a_job_no_pool_can_run_is_refused_naming_every_pool_and_what_it_needs() -> None:
    with pytest.raises(InvalidInput) as err:
        check(Resources(16000, GIB), unnamed=("gpu",))
    message = str(err.value)
    assert err.value.field == "bunch[0].resources"
    assert "needs 16 cores and 1 GiB and names no pool" in message
    assert "pool default's largest instance has 1 core and 1 GiB" in message
    assert "pool gpu's largest instance has 8 cores, 32 GiB and 1 GPU (a100)" in message


def test_a_job_naming_another_pool_is_checked_against_that_pool_only() -> None:
    with pytest.raises(InvalidInput):
        check(Resources(1000, GIB, 2), "gpu", unnamed=("gpu",))
