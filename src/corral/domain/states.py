"""Job and batch states and the table of legal job transitions."""

from __future__ import annotations

from enum import StrEnum

from corral.errors import IllegalTransition


class JobState(StrEnum):
    PENDING = "Pending"
    READY = "Ready"
    CREATING = "Creating"
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
        """Holding (or about to hold) resources on an instance."""
        return self in (JobState.CREATING, JobState.RUNNING)


COMPLETE_STATES: frozenset[JobState] = frozenset(
    {JobState.SUCCESS, JobState.FAILED, JobState.ERROR, JobState.CANCELLED}
)
# Failed and Error both count as failures in batch counts, as in Hail.
FAILURE_STATES: frozenset[JobState] = frozenset({JobState.FAILED, JobState.ERROR})

TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.PENDING: frozenset({JobState.READY, JobState.CANCELLED}),
    JobState.READY: frozenset({JobState.CREATING, JobState.RUNNING, JobState.CANCELLED, JobState.ERROR}),
    JobState.CREATING: frozenset(
        {JobState.RUNNING, JobState.READY, JobState.CANCELLED, JobState.ERROR}
    ),
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


def check_transition(src: JobState, dst: JobState) -> None:
    if not can_transition(src, dst):
        raise IllegalTransition(f"a job cannot move from {src} to {dst}")


class BatchState(StrEnum):
    OPEN = "open"  # created, nothing committed yet
    RUNNING = "running"
    SUCCESS = "success"
    FAILURE = "failure"
    CANCELLED = "cancelled"
