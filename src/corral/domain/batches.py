"""Batch state and counts, derived from job counts."""

from __future__ import annotations

from dataclasses import dataclass

from corral.domain.states import FAILURE_STATES, BatchState, JobState


@dataclass(frozen=True)
class BatchCounts:
    n_jobs: int
    n_completed: int
    n_succeeded: int
    n_failed: int
    n_cancelled: int

    @property
    def complete(self) -> bool:
        return self.n_completed >= self.n_jobs


def batch_state(counts: BatchCounts, *, closed: bool, cancelled: bool) -> BatchState:
    """Hail's rule: cancelled wins, then any failure, then success once everything completed."""
    if not closed:
        return BatchState.OPEN
    if cancelled:
        return BatchState.CANCELLED
    if counts.n_failed > 0:
        return BatchState.FAILURE
    if counts.complete:
        return BatchState.SUCCESS if counts.n_cancelled == 0 else BatchState.FAILURE
    return BatchState.RUNNING


@dataclass
class CountDelta:
    """What a group of job completions adds to one batch's counters."""

    n_completed: int = 0
    n_succeeded: int = 0
    n_failed: int = 0
    n_cancelled: int = 0

    def add(self, state: JobState) -> None:
        self.n_completed += 1
        if state is JobState.SUCCESS:
            self.n_succeeded += 1
        elif state in FAILURE_STATES:
            self.n_failed += 1
        elif state is JobState.CANCELLED:
            self.n_cancelled += 1

    def __bool__(self) -> bool:
        return self.n_completed > 0


def reaches_failure_limit(
    counts: BatchCounts, *, cancel_after_n_failures: int | None, cancelled: bool
) -> bool:
    """A batch with `cancel_after_n_failures` is cancelled (once) when that many of its jobs failed."""
    return (
        cancel_after_n_failures is not None
        and counts.n_failed >= cancel_after_n_failures
        and not cancelled
        and not counts.complete
    )
