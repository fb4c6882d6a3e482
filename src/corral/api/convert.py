"""Store records -> wire schemas."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any, cast

from corral.api.schemas import AttemptStatus, BatchStateName, BatchStatus, JobStateName, JobStatus, JobSummary
from corral.store.batches import BatchRecord
from corral.store.jobs_read import AttemptRecord, JobRecord


def iso(t: float | None) -> str | None:
    if t is None:
        return None
    return datetime.fromtimestamp(t, tz=UTC).isoformat().replace("+00:00", "Z")


def batch_status(batch: BatchRecord) -> BatchStatus:
    duration = None
    if batch.closed:
        end = batch.time_completed if batch.time_completed is not None else time.time()
        duration = max(0, round((end - batch.time_created) * 1000))
    return BatchStatus(
        id=batch.id,
        user=batch.user,
        billing_project=batch.billing_project,
        token=batch.token,
        state=cast(BatchStateName, batch.state),
        complete=batch.complete,
        closed=batch.closed,
        n_jobs=batch.n_jobs,
        n_completed=batch.n_completed,
        n_succeeded=batch.n_succeeded,
        n_failed=batch.n_failed,
        n_cancelled=batch.n_cancelled,
        time_created=iso(batch.time_created),
        time_closed=iso(batch.time_closed),
        time_completed=iso(batch.time_completed),
        duration=duration,
        msec_mcpu=batch.msec_mcpu,
        cost=batch.cost,
        attributes=batch.attributes,
    )


def job_duration_ms(status: dict[str, Any] | None) -> int | None:
    """Sum of the steps' durations, from container_statuses once the job ran."""
    steps = (status or {}).get("container_statuses") or {}
    total: int | None = None
    for step in steps.values():
        timing = (step or {}).get("timing") or {}
        if timing.get("duration_ms") is not None:
            total = (total or 0) + int(timing["duration_ms"])
    return total


def _summary_fields(job: JobRecord, billing_project: str) -> dict[str, Any]:
    return {
        "batch_id": job.batch_id,
        "job_id": job.job_id,
        "name": job.name,
        "user": job.user,
        "billing_project": billing_project,
        "state": cast(JobStateName, job.state),
        "exit_code": job.exit_code,
        "duration": job_duration_ms(job.status),
        "cost": job.cost,
        "msec_mcpu": job.msec_mcpu,
        "always_run": job.always_run,
        "waiting_reason": job.waiting_reason if job.state == "Ready" else None,
    }


def job_summary(job: JobRecord, billing_project: str) -> JobSummary:
    return JobSummary(**_summary_fields(job, billing_project))


def job_status(job: JobRecord, billing_project: str, spec: dict[str, Any]) -> JobStatus:
    return JobStatus(
        **_summary_fields(job, billing_project),
        status=job.status,
        attributes=job.attributes,
        spec={
            **spec,
            "cores_mcpu": job.cores_mcpu,
            "memory_bytes": job.memory_bytes,
            "storage_bytes": job.storage_bytes,
            "pool": job.pool,
            "n_max_attempts": job.n_max_attempts,
        },
    )


def attempt_status(attempt: AttemptRecord) -> AttemptStatus:
    start = attempt.time_started if attempt.time_started is not None else attempt.time_assigned
    return AttemptStatus(
        attempt_id=str(attempt.attempt_id),
        instance_name=attempt.instance_name,
        start_time=iso(start),
        end_time=iso(attempt.time_ended),
        reason=attempt.end_reason,
        exit_code=attempt.exit_code,
    )
