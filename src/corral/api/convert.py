"""Store records -> wire schemas."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, cast

from corral.api.schemas import AttemptStatus, BatchStateName, BatchStatus, JobStateName, JobStatus, JobSummary
from corral.domain.reasons import FailedParent, ended_reason
from corral.domain.services import Endpoint
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


@dataclass(frozen=True, slots=True)
class ReasonFacts:
    """What the reason of an ended job needs beyond the job's own record."""

    failed_parents: dict[int, FailedParent] = field(default_factory=dict)
    timeouts: dict[int, float] = field(default_factory=dict)
    batch_cancelled: bool = False


def job_reason(job: JobRecord, facts: ReasonFacts) -> str | None:
    return ended_reason(
        job.state,
        exit_code=job.exit_code,
        status=job.status,
        memory_bytes=job.memory_bytes,
        timeout=facts.timeouts.get(job.job_id),
        n_attempts=job.n_attempts,
        failed_parent=facts.failed_parents.get(job.job_id),
        batch_cancelled=facts.batch_cancelled,
    )


def _summary_fields(job: JobRecord, billing_project: str, facts: ReasonFacts | None = None) -> dict[str, Any]:
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
        "serving": job.time_serving is not None and job.state == "Running",
        "waiting_reason": job.waiting_reason if job.state == "Ready" else None,
        "reason": job_reason(job, facts or ReasonFacts()),
        "pool": job.pool,
    }


def job_summary(job: JobRecord, billing_project: str, facts: ReasonFacts | None = None) -> JobSummary:
    return JobSummary(**_summary_fields(job, billing_project, facts))


def job_status(
    job: JobRecord, billing_project: str, spec: dict[str, Any], facts: ReasonFacts | None = None
) -> JobStatus:
    return JobStatus(
        **_summary_fields(job, billing_project, facts),
        status=job.status,
        endpoint=_endpoint(job),
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


def _endpoint(job: JobRecord) -> dict[str, Any] | None:
    if not job.endpoint or not job.endpoint.get("ports"):
        return None
    name = job.name or f"job{job.job_id}"
    endpoint = Endpoint(
        name,
        str(job.endpoint["host"]),
        {str(k): int(v) for k, v in job.endpoint["ports"].items()},
        str(job.endpoint.get("scheme") or "http"),
    )
    return {
        **endpoint.to_wire(),
        "serving": job.time_serving is not None and job.state == "Running",
        "ready_seconds": job.endpoint.get("ready_seconds"),
        "time_serving": job.time_serving,
        "probes": job.endpoint.get("probes") or [],
    }
