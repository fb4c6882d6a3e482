"""Job routes: list, status, attempts, logs."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from corral.api.access import redact_spec, redact_text, visible_batch
from corral.api.auth import CurrentUser
from corral.api.context import ApiContext, Context
from corral.api.convert import attempt_status, job_status, job_summary
from corral.api.costs import job_breakdown
from corral.api.params import BatchId, IdCursor, JobId
from corral.api.query import job_predicate, job_states
from corral.api.schemas import AttemptStatus, JobList, JobStatus
from corral.errors import InvalidInput, NotFound
from corral.store import jobs_read
from corral.store.batches import BatchRecord
from corral.store.jobs_read import AttemptRecord, JobRecord
from corral.store.logs import STEPS, read_latest_logs
from corral.store.users import User

router = APIRouter(prefix="/api/v1/batches/{batch_id}/jobs", tags=["jobs"])


async def visible_job(
    ctx: ApiContext, user: User, batch_id: int, job_id: int
) -> tuple[BatchRecord, JobRecord, dict[str, object], list[AttemptRecord]]:
    """The batch, job, spec and attempts, if `user` may see them (404 otherwise). The spec is the stored
    one: pass it through `redact_spec` / `redact_text` before showing it or a log to `user`."""
    async with ctx.reading() as conn:
        batch = await visible_batch(conn, batch_id, user)
        found = await jobs_read.get_job(conn, batch_id, job_id)
        if found is None:
            raise NotFound(f"job_id: batch {batch_id} has no job {job_id}", field="job_id")
        attempts = await jobs_read.list_attempts(conn, batch_id, job_id)
    return batch, found[0], found[1], attempts


@router.get("")
async def list_jobs(
    batch_id: BatchId,
    ctx: Context,
    user: CurrentUser,
    state: str | None = None,
    q: str | None = None,
    last_job_id: IdCursor = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> JobList:
    """Ascending job id; page with the returned last_job_id. `state`: comma-separated states or groups
    (done, live, running, bad); `q`: Hail v1 terms."""
    states = job_states(state)
    predicate = job_predicate(q)
    async with ctx.reading() as conn:
        batch = await visible_batch(conn, batch_id, user)
        found = await jobs_read.list_jobs(
            conn, batch_id, states=states, last_job_id=last_job_id, limit=limit, predicate=predicate
        )
    return JobList(
        jobs=[job_summary(j, batch.billing_project) for j in found],
        last_job_id=found[-1].job_id if len(found) == limit else None,
    )


@router.get("/{job_id}")
async def get_job(batch_id: BatchId, job_id: JobId, ctx: Context, user: CurrentUser) -> JobStatus:
    batch, job, spec, _ = await visible_job(ctx, user, batch_id, job_id)
    async with ctx.reading() as conn:
        costs = await job_breakdown(conn, batch_id, job_id)
    status = job_status(job, batch.billing_project, redact_spec(dict(spec), batch, user))
    return status.model_copy(update={"cost_breakdown": costs})


@router.get("/{job_id}/attempts")
async def get_attempts(
    batch_id: BatchId, job_id: JobId, ctx: Context, user: CurrentUser
) -> list[AttemptStatus]:
    _, _, _, attempts = await visible_job(ctx, user, batch_id, job_id)
    return [attempt_status(a) for a in attempts]


@router.get("/{job_id}/log")
async def get_logs(batch_id: BatchId, job_id: JobId, ctx: Context, user: CurrentUser) -> dict[str, str]:
    """{step: text} of the newest attempt that has logs ({} before the job ran)."""
    batch, _, spec, attempts = await visible_job(ctx, user, batch_id, job_id)
    ids = [a.attempt_id for a in attempts]
    _, logs = await asyncio.to_thread(read_latest_logs, ctx.settings.log_dir, batch_id, job_id, ids)
    return {step: redact_text(text, dict(spec), batch, user) for step, text in logs.items()}


@router.get("/{job_id}/log/{step}", response_class=PlainTextResponse)
async def get_step_log(batch_id: BatchId, job_id: JobId, step: str, ctx: Context, user: CurrentUser) -> str:
    if step not in STEPS:
        raise InvalidInput(f"step: {step!r} is not a step; use one of {', '.join(STEPS)}", field="step")
    batch, _, spec, attempts = await visible_job(ctx, user, batch_id, job_id)
    ids = [a.attempt_id for a in attempts]
    _, logs = await asyncio.to_thread(read_latest_logs, ctx.settings.log_dir, batch_id, job_id, ids)
    if step not in logs:
        raise NotFound(f"step: job {job_id} of batch {batch_id} has no {step} log yet", field="step")
    return redact_text(logs[step], dict(spec), batch, user)
