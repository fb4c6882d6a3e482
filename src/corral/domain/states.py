"""Job and batch states and the table of legal job transitions.

The table is the law: the store's one job-moving function (`store.job_moves.move_jobs`) builds its WHERE
clause from `sources_for`, so no write can take a job along an edge that is not here.

There is no Creating state: a job waiting for its job-private instance stays Ready (its waiting reason
says so), and the driver moves Ready -> Running when it commits the attempt to an instance.
"""

from __future__ import annotations

from enum import StrEnum

from corral.errors import IllegalTransition


class JobState(StrEnum):
    PENDING = "Pending"
    READY = "Ready"
    RUNNING = "Running"
    SUCCESS = "Success"
    FAILED = "Failed"
    ERROR = "Error"
    CANCELLED = "Cancelled"

    @property
    def is_complete(self) -> bool:
        return self in COMPLETE_STATES

    @property
    def is_active(self) -> bool:
        """Holding resources on an instance."""
        return self is JobState.RUNNING


COMPLETE_STATES: frozenset[JobState] = frozenset(
    {JobState.SUCCESS, JobState.FAILED, JobState.ERROR, JobState.CANCELLED}
)
# The one definition of "not finished yet" (cancellable, counted as a pending parent).
INCOMPLETE_STATES: frozenset[JobState] = frozenset({JobState.PENDING, JobState.READY, JobState.RUNNING})
# Failed and Error both count as failures in batch counts, as in Hail.
FAILURE_STATES: frozenset[JobState] = frozenset({JobState.FAILED, JobState.ERROR})
# A parent in one of these makes its children cancelled (unless always_run).
NOT_SUCCESS_STATES: frozenset[JobState] = COMPLETE_STATES - {JobState.SUCCESS}

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.READY, JobState.CANCELLED}),
    JobState.READY: frozenset({JobState.RUNNING, JobState.CANCELLED, JobState.ERROR}),
    # Running -> Ready is a lost attempt (instance gone) that will be retried.
    JobState.RUNNING: frozenset(
        {JobState.SUCCESS, JobState.FAILED, JobState.ERROR, JobState.CANCELLED, JobState.READY}
    ),
    JobState.SUCCESS: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.ERROR: frozenset(),
    JobState.CANCELLED: frozenset(),
}


def can_transition(src: JobState, dst: JobState) -> bool:
    return dst in TRANSITIONS[src]


def sources_for(dst: JobState) -> frozenset[JobState]:
    """States from which `dst` may be entered: the WHERE clause of a conditional update."""
    return frozenset(s for s, targets in TRANSITIONS.items() if dst in targets)


def legal_sources(dst: JobState, only_from: frozenset[JobState] | None = None) -> frozenset[JobState]:
    """The states a move to `dst` may start from, narrowed to `only_from`; asking for an edge the table
    does not have is a bug, raised at once."""
    sources = sources_for(dst)
    if only_from is None:
        return sources
    illegal = only_from - sources
    if illegal:
        names = ", ".join(sorted(illegal))
        raise IllegalTransition(f"a job cannot move from {names} to {dst}")
    return only_from


def check_transition(src: JobState, dst: JobState) -> None:
    if not can_transition(src, dst):
        raise IllegalTransition(f"a job cannot move from {src} to {dst}")


class BatchState(StrEnum):
    OPEN = "open"  # created, nothing committed yet
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"
