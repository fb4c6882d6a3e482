from __future__ import annotations

import pytest

from corral.domain.dag import check_job_ids, check_parents, find_cycle
from corral.errors import InvalidInput


def test_ids_must_cover_the_update() -> None:
    check_job_ids([1, 2, 3], 3)
    with pytest.raises(InvalidInput, match="out of range"):
        check_job_ids([1, 4], 3)
    with pytest.raises(InvalidInput, match="twice"):
        check_job_ids([1, 1], 3)


def test_unknown_parent_is_named() -> None:
    with pytest.raises(InvalidInput, match="unknown parent 9"):
        check_parents({1: [], 2: [9]}, {1, 2})


def test_cycle_is_reported_with_its_path() -> None:
    with pytest.raises(InvalidInput, match="cycle"):
        check_parents({1: [3], 2: [1], 3: [2]}, {1, 2, 3})


def test_self_parent_is_rejected() -> None:
    with pytest.raises(InvalidInput, match="itself"):
        check_parents({1: [1]}, {1})


def test_deep_chain_has_no_cycle_and_no_recursion_limit() -> None:
    parents = {i: [i - 1] for i in range(2, 50_000)}
    parents[1] = []
    assert find_cycle(parents) is None


def test_diamond_is_not_a_cycle() -> None:
    assert find_cycle({1: [], 2: [1], 3: [1], 4: [2, 3]}) is None
