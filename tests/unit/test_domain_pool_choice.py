"""A job that names no pool goes to the cheapest pool that can start it soonest."""

from __future__ import annotations

from corral.domain.pool_choice import PoolCandidate, choose_pool


def pool(
    name: str,
    *,
    fits: bool = True,
    room_now: bool = False,
    can_grow: bool = True,
    startup: float = 10.0,
    price: float = 0.0,
) -> PoolCandidate:
    return PoolCandidate(name, fits, room_now, can_grow, startup, price)


def test_a_pool_with_room_now_beats_a_cheaper_one_that_must_bring_up_an_instance() -> None:
    assert (
        choose_pool([pool("rented", price=0.1, startup=120), pool("lab", room_now=True, price=0.5)]) == "lab"
    )


def test_among_pools_that_start_it_equally_soon_the_cheapest_wins() -> None:
    pools = [
        pool("default", room_now=True, price=0.3),
        pool("lab", room_now=True, price=0.05),
        pool("hpc", room_now=True, price=0.2),
    ]
    assert choose_pool(pools) == "lab"


def test_pools_that_cannot_fit_the_job_are_never_chosen() -> None:
    assert choose_pool([pool("small", fits=False, room_now=True), pool("gpu", startup=200, price=1)]) == "gpu"
    assert choose_pool([pool("small", fits=False), pool("tiny", fits=False)]) is None


def test_when_no_pool_can_start_it_soon_the_faster_bring_up_wins() -> None:
    pools = [pool("rented", startup=180, price=0.1), pool("hpc", startup=5, price=0.4)]
    assert choose_pool(pools) == "hpc"
    assert choose_pool(pools, tolerance=200) == "rented"  # within the tolerance, price decides


def test_full_pools_that_cannot_grow_wait_where_it_is_cheapest_and_ties_go_to_the_first() -> None:
    full = [pool("a", can_grow=False, price=0.2), pool("b", can_grow=False, price=0.1)]
    assert choose_pool(full) == "b"
    assert (
        choose_pool([pool("default", room_now=True, price=0.1), pool("x", room_now=True, price=0.1)])
        == "default"
    )
