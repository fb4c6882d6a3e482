"""Turning worker reports into attempt outcomes for the store (pure)."""

from __future__ import annotations

from typing import Any

from corral.domain.states import JobState
from corral.driver.instances import AttemptInFlight
from corral.store.scheduling import AttemptOutcome

_STATES = {
    "succeeded": (JobState.SUCCESS, "success"),
    "failed": (JobState.FAILED, "failed"),
    "error": (JobState.ERROR, "error"),
    "cancelled": (JobState.CANCELLED, "cancelled"),
}


def msec_mcpu(attempt: AttemptInFlight, time_ended: float) -> int:
    start = attempt.time_started or attempt.time_assigned
    return max(0, int((time_ended - start) * 1000)) * attempt.cores_mcpu


def cost_of(msec_mcpu_used: int, cost_per_core_hour: float) -> float:
    return msec_mcpu_used / 1000 / 1000 / 3600 * cost_per_core_hour


def completed_outcome(
    attempt: AttemptInFlight, event: dict[str, Any], cost_per_core_hour: float
) -> AttemptOutcome:
    state, reason = _STATES.get(str(event.get("state")), (JobState.ERROR, "error"))
    if event.get("timed_out"):
        state, reason = JobState.ERROR, "timeout"
    time_ended = float(event.get("time") or 0.0) or attempt.time_assigned
    status = {
        "attempt_id": attempt.attempt_id,
        "state": event.get("state"),
        "error": event.get("error"),
        "out_of_memory": bool(event.get("out_of_memory")),
        "timed_out": bool(event.get("timed_out")),
        "exit_code": event.get("exit_code"),
        "container_statuses": event.get("container_statuses") or {},
        "resource_usage": event.get("resource_usage") or {},
        "start_time": attempt.time_started,
        "end_time": time_ended,
    }
    if event.get("service"):  # a service job: probes, timings, last error, endpoint
        status["service"] = event["service"]
    used = msec_mcpu(attempt, time_ended)
    return AttemptOutcome(
        attempt.batch_id, attempt.job_id, attempt.attempt_id, state, reason, time_ended,
        exit_code=event.get("exit_code"), status=status, msec_mcpu=used,
        cost=cost_of(used, cost_per_core_hour),
    )


def lost_outcome(
    attempt: AttemptInFlight, reason: str, now: float, cost_per_core_hour: float
) -> AttemptOutcome:
    used = msec_mcpu(attempt, now)
    status = {"attempt_id": attempt.attempt_id, "error": f"attempt lost: {reason}"}
    return AttemptOutcome(
        attempt.batch_id, attempt.job_id, attempt.attempt_id, JobState.READY, "lost", now,
        status=status, msec_mcpu=used, cost=cost_of(used, cost_per_core_hour),
    )
