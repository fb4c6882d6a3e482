"""What the driver's named queries read and return (plain records, no SQL)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

from corral.domain.scheduling import ReadyJob
from corral.domain.states import JobState


class QueuedJob(NamedTuple):
    """A Ready job as read to be queued. A named tuple, not a frozen dataclass: a committed batch or a
    rebuild makes 100,000 of them at once, and a frozen dataclass costs twice as much to build."""

    job: ReadyJob
    pool: str
    always_run: bool
    doomed: bool  # parent failed or batch cancelled: to be cancelled, not run (unless always_run)


@dataclass(frozen=True, slots=True)
class RunningAttempt:
    batch_id: int
    job_id: int
    attempt_id: int
    instance_name: str
    user: str
    pool: str
    cores_mcpu: int
    memory_bytes: int
    storage_bytes: int
    spec: dict[str, Any]
    time_assigned: float
    time_started: float | None
    gpus: int = 0


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """How an attempt ended. job_state READY means 'lost': retry if attempts remain."""

    batch_id: int
    job_id: int
    attempt_id: int
    job_state: JobState
    end_reason: str
    time_ended: float
    exit_code: int | None = None
    status: dict[str, Any] | None = None
    msec_mcpu: int = 0
    cost: float = 0.0
    # Its start as the driver heard it, written with its end (None: the store's, if any, stays): an attempt
    # that started and ended in one tick has no separate start write (driver/step.py, TickPlan.start_times).
    time_started: float | None = None


@dataclass
class CascadeResult:
    ready: list[QueuedJob] = field(default_factory=list)  # jobs that became Ready (queue them)
    requeued: list[QueuedJob] = field(default_factory=list)  # lost attempts to retry
    ended: list[AttemptOutcome] = field(default_factory=list)  # outcomes actually applied
    batches_to_cancel: list[int] = field(default_factory=list)  # cancel_after_n_failures reached
    completed_batches: list[int] = field(default_factory=list)

    def merge(self, other: CascadeResult) -> None:
        self.ready.extend(other.ready)
        self.requeued.extend(other.requeued)
        self.ended.extend(other.ended)
        self.batches_to_cancel.extend(other.batches_to_cancel)
        self.completed_batches.extend(other.completed_batches)


@dataclass
class CancelResult:
    cascade: CascadeResult
    killed: list[tuple[int, int, int, str]]  # (batch, job, attempt, instance) attempts to kill
    more: bool = False  # only a chunk was cancelled: the rest in the next tick
