"""Turning worker reports into attempt outcomes for the store (pure)."""

from __future__ import annotations

from corral.domain.attempts import RETURNED, clamp_time
from corral.domain.states import JobState
from corral.driver.instances import AttemptInFlight
from corral.store.scheduling import AttemptOutcome
from corral.worker.protocol import CompletedEvent, ReturnedEvent

_STATES = {
    "succeeded": (JobState.SUCCESS, "success"),
    "failed": (JobState.FAILED, "failed"),
    "error": (JobState.ERROR, "error"),
    "cancelled": (JobState.CANCELLED, "cancelled"),
}


def msec_mcpu(attempt: AttemptInFlight, time_ended: float) -> int:
    start = attempt.time_started or attempt.time_assigned
    return max(0, int((time_ended - start) * 1000)) * attempt.cores_mcpu


def completed_outcome(
    attempt: AttemptInFlight, event: CompletedEvent, now: float
) -> AttemptOutcome:
    """`now` is the driver's clock: the reported end time is kept between the attempt's start and now.
    Its cost is not here: the billing ledger charges it (driver/accounting.py)."""
    state, reason = _STATES[event.state]
    if event.timed_out:
        state, reason = JobState.ERROR, "timeout"
    time_ended = clamp_time(event.time, attempt.time_started or attempt.time_assigned, now)
    status = {
        "attempt_id": attempt.attempt_id,
        "state": event.state,
        "error": event.error,
        "out_of_memory": event.out_of_memory,
        "timed_out": event.timed_out,
        "exit_code": event.exit_code,
        "container_statuses": event.container_statuses,
        "resource_usage": event.resource_usage,
        "start_time": attempt.time_started,
        "end_time": time_ended,
    }
    if event.service:  # a service job: probes, timings, last error, endpoint
        status["service"] = event.service
    used = msec_mcpu(attempt, time_ended)
    return AttemptOutcome(
        attempt.batch_id, attempt.job_id, attempt.attempt_id, state, reason, time_ended,
        exit_code=event.exit_code, status=status, msec_mcpu=used, time_started=attempt.time_started,
    )


def lost_outcome(attempt: AttemptInFlight, reason: str, now: float) -> AttemptOutcome:
    used = msec_mcpu(attempt, now)
    status = {"attempt_id": attempt.attempt_id, "error": f"attempt lost: {reason}"}
    return AttemptOutcome(
        attempt.batch_id, attempt.job_id, attempt.attempt_id, JobState.READY, "lost", now,
        status=status, msec_mcpu=used, time_started=attempt.time_started,
    )


def error_outcome(attempt: AttemptInFlight, error: str, now: float) -> AttemptOutcome:
    """The driver could not apply what happened to this attempt: end its job in Error, saying why."""
    status = {"attempt_id": attempt.attempt_id, "error": error}
    return AttemptOutcome(
        attempt.batch_id, attempt.job_id, attempt.attempt_id, JobState.ERROR, "error", now, status=status
    )


def returned_outcome(attempt: AttemptInFlight, event: ReturnedEvent, now: float) -> AttemptOutcome:
    """Given back by its worker before it started: the job is Ready again; the attempt used nothing, is not
    counted against n_max_attempts and is not charged."""
    status = {
        "attempt_id": attempt.attempt_id,
        "error": f"given back unstarted by instance {attempt.instance_name} after {event.waited:.1f}s "
                 "waiting there for cores; the job runs again (this attempt is not counted or charged)",
    }
    return AttemptOutcome(
        attempt.batch_id, attempt.job_id, attempt.attempt_id, JobState.READY, RETURNED, now, status=status
    )
