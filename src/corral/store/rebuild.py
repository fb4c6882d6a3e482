"""Named queries the driver reads its in-memory state from at start (and after a failed tick)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import and_, bindparam, exists, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.domain.scheduling import ReadyJob
from corral.domain.states import INCOMPLETE_STATES, JobState
from corral.store.driver_records import QueuedJob, RunningAttempt
from corral.store.job_moves import JobKey, state_in
from corral.store.tables import attempts, batches, jobs


def queued_job_query() -> Any:
    doomed = and_(
        jobs.c.always_run.is_(False),
        (jobs.c.parent_failed.is_(True)) | (batches.c.cancelled.is_(True)),
    )
    return select(
        jobs.c.batch_id, jobs.c.job_id, jobs.c.user, jobs.c.cores_mcpu, jobs.c.memory_bytes,
        jobs.c.n_attempts, jobs.c.pool, jobs.c.always_run, doomed.label("doomed"), jobs.c.gpus,
        jobs.c.gpu_type,
    ).join(batches, batches.c.id == jobs.c.batch_id)


_QUEUED_COLUMNS = 11  # queued_job_query's columns; callers may add more after them


def queued(row: Any) -> QueuedJob:
    # Positional: a committed 100,000-job batch is read in one go, and Row attribute lookups by name
    # were most of that read's Python time.
    batch_id, job_id, user, cores_mcpu, memory_bytes, n_attempts, pool, always_run, doomed, gpus, gpu_type = (
        row[:_QUEUED_COLUMNS]
    )
    job = ReadyJob(batch_id, job_id, user, cores_mcpu, memory_bytes, n_attempts, gpus, gpu_type)
    return QueuedJob(job, pool, bool(always_run), bool(doomed))


async def load_ready_jobs(conn: AsyncConnection, batch_id: int | None = None) -> list[QueuedJob]:
    query = queued_job_query().where(jobs.c.state == JobState.READY)
    if batch_id is not None:
        query = query.where(jobs.c.batch_id == batch_id)
    result = await conn.execute(query.order_by(jobs.c.batch_id, jobs.c.job_id))
    return [queued(row) for row in result]


async def load_running_attempts(conn: AsyncConnection) -> list[RunningAttempt]:
    query = select(
        attempts.c.batch_id, attempts.c.job_id, attempts.c.attempt_id, attempts.c.instance_name,
        jobs.c.user, jobs.c.pool, attempts.c.cores_mcpu, attempts.c.memory_bytes, jobs.c.storage_bytes,
        jobs.c.spec, attempts.c.time_assigned, attempts.c.time_started, jobs.c.gpus,
    ).join(jobs, and_(jobs.c.batch_id == attempts.c.batch_id, jobs.c.job_id == attempts.c.job_id)).where(
        attempts.c.state == "running"
    )
    return [RunningAttempt(*tuple(row)) for row in await conn.execute(query)]


async def cancelled_batches_with_work(conn: AsyncConnection) -> list[int]:
    """Cancelled batches that still have cancellable jobs (a cancel interrupted by a crash)."""
    query = (
        select(batches.c.id)
        .where(batches.c.cancelled.is_(True))
        .where(
            exists().where(
                jobs.c.batch_id == batches.c.id,
                state_in(jobs.c.state, INCOMPLETE_STATES),
                jobs.c.always_run.is_(False),
            )
        )
    )
    return [row.id for row in await conn.execute(query)]


async def save_waiting_reasons(conn: AsyncConnection, reasons: Mapping[JobKey, str | None]) -> None:
    """Why Ready jobs wait (None: they no longer do); jobs that left Ready keep nothing."""
    if not reasons:
        return
    await conn.execute(
        update(jobs)
        .where(jobs.c.batch_id == bindparam("b"), jobs.c.job_id == bindparam("j"))
        .where(jobs.c.state == JobState.READY)
        .values(waiting_reason=bindparam("r")),
        [{"b": b, "j": j, "r": reason} for (b, j), reason in reasons.items()],
    )
