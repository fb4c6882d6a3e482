"""The driver's named queries, in one namespace: rebuild, attempts, cascade, batch state, cancel.

The driver's single writer loop calls these inside one transaction per tick (group commit). Every job
state change goes through `store.job_moves.move_jobs` (the transition table's WHERE clause), so a stale
or duplicate report changes nothing.
"""

from __future__ import annotations

from corral.domain.states import BatchState
from corral.store.attempts import end_attempts, mark_started, start_attempts
from corral.store.batch_state import refresh_batch_states
from corral.store.cancel import cancel_batch_jobs, cancel_ready_jobs
from corral.store.cascade import complete_jobs
from corral.store.driver_records import AttemptOutcome, CancelResult, CascadeResult, QueuedJob, RunningAttempt
from corral.store.rebuild import (
    cancelled_batches_with_work,
    load_ready_jobs,
    load_running_attempts,
    save_waiting_reasons,
)

__all__ = [
    "AttemptOutcome", "BatchState", "CancelResult", "CascadeResult", "QueuedJob", "RunningAttempt",
    "cancel_batch_jobs", "cancel_ready_jobs", "cancelled_batches_with_work", "complete_jobs",
    "end_attempts", "load_ready_jobs", "load_running_attempts", "mark_started", "refresh_batch_states",
    "save_waiting_reasons", "start_attempts",
]
