from __future__ import annotations

import pytest

from corral.domain.batches import BatchCounts, CountDelta, batch_state
from corral.domain.states import COMPLETE_STATES, BatchState, JobState, check_transition, sources_for
from corral.errors import IllegalTransition


def test_complete_states_have_no_way_out() -> None:
    for state in COMPLETE_STATES:
        for target in JobState:
            with pytest.raises(IllegalTransition):
                check_transition(state, target)


def test_pending_job_cannot_start_running_without_becoming_ready() -> None:
    with pytest.raises(IllegalTransition):
        check_transition(JobState.PENDING, JobState.RUNNING)
    check_transition(JobState.PENDING, JobState.READY)


def test_lost_attempt_returns_running_job_to_ready() -> None:
    check_transition(JobState.RUNNING, JobState.READY)
    assert JobState.RUNNING in sources_for(JobState.READY)


def test_success_is_entered_only_from_running() -> None:
    assert sources_for(JobState.SUCCESS) == {JobState.RUNNING}


def test_batch_with_a_failure_is_failure_even_while_running() -> None:
    counts = BatchCounts(n_jobs=3, n_completed=1, n_succeeded=0, n_failed=1, n_cancelled=0)
    assert batch_state(counts, closed=True, cancelled=False) is BatchState.FAILURE


def test_batch_states_follow_counts() -> None:
    running = BatchCounts(3, 1, 1, 0, 0)
    done = BatchCounts(3, 3, 3, 0, 0)
    assert batch_state(running, closed=True, cancelled=False) is BatchState.RUNNING
    assert batch_state(done, closed=True, cancelled=False) is BatchState.SUCCESS
    assert batch_state(done, closed=False, cancelled=False) is BatchState.OPEN
    assert batch_state(running, closed=True, cancelled=True) is BatchState.CANCELLED


def test_count_delta_classifies_error_as_failure() -> None:
    delta = CountDelta()
    for state in (JobState.SUCCESS, JobState.FAILED, JobState.ERROR, JobState.CANCELLED):
        delta.add(state)
    assert (delta.n_completed, delta.n_succeeded, delta.n_failed, delta.n_cancelled) == (4, 1, 2, 1)
