"""The counted pause of the cyclic garbage collector (bunch parsing, queueing a committed batch)."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from corral.api.gcpause import gc_paused as api_gc_paused
from corral.gcpause import gc_paused


@pytest.fixture(autouse=True)
def collector_on() -> Iterator[None]:
    gc.enable()
    yield
    gc.enable()


def test_overlapping_pauses_turn_the_collector_back_on_only_when_the_last_one_ends() -> None:
    first, second = gc_paused(), api_gc_paused()  # the API and the driver share one counter
    first.__enter__()
    assert not gc.isenabled()
    second.__enter__()
    first.__exit__(None, None, None)
    assert not gc.isenabled()  # the second pause is still running
    second.__exit__(None, None, None)
    assert gc.isenabled()


def test_a_failure_inside_the_pause_turns_the_collector_back_on() -> None:
    with pytest.raises(RuntimeError), gc_paused():
        raise RuntimeError("bad bunch")
    assert gc.isenabled()


def test_a_collector_that_was_off_stays_off() -> None:
    gc.disable()
    with gc_paused():
        pass
    assert not gc.isenabled()
