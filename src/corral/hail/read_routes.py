"""Hail's read routes (/api/v1alpha and /api/v2alpha): batches, the root job group, jobs, logs,
attempts, plus the small facts the client asks for (version, cloud, regions)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Query
from fastapi.responses import PlainTextResponse

from corral import __version__
from corral.api.access import redact_spec, redact_text, visible_batch
from corral.api.auth import CurrentUser
from corral.api.context import ApiContext, Context
from corral.api.convert import attempt_status
from corral.api.costs import batch_breakdowns, job_breakdown
from corral.api.params import BatchCursor, BatchId, IdCursor, JobGroupId, JobId
from corral.api.query import batch_predicate, job_predicate
from corral.api.routes.jobs import visible_job
from corral.errors import InvalidInput, NotFound
from corral.hail.job_groups import descendants, group_status
from corral.hail.query_v2 import batch_predicate_v2, job_predicate_v2
from corral.hail.shapes import ROOT_JOB_GROUP_ID, hail_batch, hail_job, hail_job_entry, hail_job_group
from corral.store import batches as batch_store
from corral.store import job_groups as group_store
from corral.store import jobs_read
from corral.store.batches import BatchRecord
from corral.store.job_groups import JobGroupRecord
from corral.store.jobs_read import JobRecord
from corral.store.logs import STEPS, read_latest_logs
from corral.store.users import User

REGION = "local"
PAGE = 50
router = APIRouter(tags=["hail"])


@router.get("/version", response_class=PlainTextResponse)
async def version() -> str:
    return __version__


@router.get("/cloud", response_class=PlainTextResponse)
async def cloud() -> str:
    return "gcp"  # the client then speaks gs:// URLs, which the bucket mapping serves


@router.get("/default_region", response_class=PlainTextResponse)
async def default_region(_user: CurrentUser) -> str:
    return REGION


@router.get("/supported_regions")
async def supported_regions(_user: CurrentUser) -> list[str]:
    return [REGION]


async def _list_batches(ctx: ApiContext, user: User, q: str | None, last: int | None, v2: bool) -> Any:
    predicate = batch_predicate_v2(q) if v2 else batch_predicate(q)
    async with ctx.reading() as conn:
        found = await batch_store.list_batches(
            conn, viewer=None if user.is_admin else user.name, last_batch_id=last, limit=PAGE,
            predicate=predicate,
        )
        costs = await batch_breakdowns(conn, [b.id for b in found])
    return {
        "batches": [{**hail_batch(b), "cost_breakdown": costs[b.id]} for b in found],
        "last_batch_id": found[-1].id if len(found) == PAGE else None,
    }


@router.get("/batches")
async def list_batches(
    ctx: Context, user: CurrentUser, q: str | None = None, last_batch_id: BatchCursor = None
) -> Any:
    return await _list_batches(ctx, user, q, last_batch_id, v2=False)


@router.get("/batches/{batch_id}")
async def get_batch(batch_id: BatchId, ctx: Context, user: CurrentUser) -> dict[str, Any]:
    async with ctx.reading(small=True) as conn:  # one batch's row and cost lines: what a client polls
        batch = await visible_batch(conn, batch_id, user)
        costs = await batch_breakdowns(conn, [batch.id])
    return {**hail_batch(batch), "cost_breakdown": costs[batch.id]}


async def _groups(ctx: ApiContext, user: User, batch_id: int) -> tuple[BatchRecord, list[JobGroupRecord]]:
    async with ctx.reading() as conn:
        batch = await visible_batch(conn, batch_id, user)
        return batch, await group_store.list_groups(conn, batch_id)


def _group(batch: BatchRecord, groups: list[JobGroupRecord], job_group_id: int) -> JobGroupRecord:
    for g in groups:
        if g.job_group_id == job_group_id:
            return g
    raise NotFound(f"job_group_id: batch {batch.id} has no job group {job_group_id}", field="job_group_id")


@router.get("/batches/{batch_id}/job-groups/{job_group_id}")
async def get_job_group(
    batch_id: BatchId, job_group_id: JobGroupId, ctx: Context, user: CurrentUser
) -> dict[str, Any]:
    batch, groups = await _groups(ctx, user, batch_id)
    if job_group_id == ROOT_JOB_GROUP_ID:
        return hail_job_group(batch)
    group = _group(batch, groups, job_group_id)
    async with ctx.reading() as conn:
        counts = await group_store.job_counts(conn, batch_id)
    return group_status(batch, group, descendants(groups, job_group_id), counts)


@router.get("/batches/{batch_id}/job-groups/{job_group_id}/job-groups")
async def list_child_groups(
    batch_id: BatchId, job_group_id: JobGroupId, ctx: Context, user: CurrentUser,
    last_job_group_id: IdCursor = None
) -> Any:
    batch, groups = await _groups(ctx, user, batch_id)
    if job_group_id != ROOT_JOB_GROUP_ID:
        _group(batch, groups, job_group_id)
    after = last_job_group_id or 0
    children = [g for g in groups if g.parent_id == job_group_id and g.job_group_id > after]
    page = children[:PAGE]
    async with ctx.reading() as conn:
        counts = await group_store.job_counts(conn, batch_id) if page else {}
    return {
        "job_groups": [group_status(batch, g, descendants(groups, g.job_group_id), counts) for g in page],
        "last_job_group_id": page[-1].job_group_id if len(children) > PAGE else None,
    }


async def _list_jobs(
    ctx: ApiContext, user: User, batch_id: int, q: str | None, last: int | None, v2: bool,
    job_group_id: int = ROOT_JOB_GROUP_ID, recursive: bool = True,
) -> dict[str, Any]:
    query = job_predicate_v2(q) if v2 else job_predicate(q)
    batch, groups = await _groups(ctx, user, batch_id)
    members: set[int] | None = None  # None: every job of the batch
    if job_group_id != ROOT_JOB_GROUP_ID:
        _group(batch, groups, job_group_id)
    if job_group_id != ROOT_JOB_GROUP_ID or not recursive:
        members = descendants(groups, job_group_id) if recursive else {job_group_id}
    predicate = _combine(query, members)
    async with ctx.reading() as conn:
        found = await jobs_read.list_jobs(conn, batch_id, last_job_id=last, limit=PAGE, predicate=predicate)
    return {
        "jobs": [hail_job_entry(j, batch.billing_project) for j in found],
        "last_job_id": found[-1].job_id if len(found) == PAGE else None,
    }


def _combine(
    query: Callable[[JobRecord], bool] | None, members: set[int] | None
) -> Callable[[JobRecord], bool] | None:
    if members is None:
        return query
    if query is None:
        return lambda j: j.job_group_id in members
    return lambda j: j.job_group_id in members and query(j)


def _recursive(value: str) -> bool:
    return value.strip().lower() in ("true", "1", "yes")


@router.get("/batches/{batch_id}/job-groups/{job_group_id}/jobs")
async def list_group_jobs(
    batch_id: BatchId, job_group_id: JobGroupId, ctx: Context, user: CurrentUser,
    q: str | None = None, last_job_id: IdCursor = None, recursive: str = "False",
) -> dict[str, Any]:
    return await _list_jobs(ctx, user, batch_id, q, last_job_id, False, job_group_id, _recursive(recursive))


@router.get("/batches/{batch_id}/jobs")
async def list_jobs(
    batch_id: BatchId, ctx: Context, user: CurrentUser, q: str | None = None, last_job_id: IdCursor = None
) -> dict[str, Any]:
    return await _list_jobs(ctx, user, batch_id, q, last_job_id, v2=False)


@router.get("/batches/{batch_id}/jobs/{job_id}")
async def get_job(batch_id: BatchId, job_id: JobId, ctx: Context, user: CurrentUser) -> dict[str, Any]:
    batch, job, spec, _ = await visible_job(ctx, user, batch_id, job_id)
    async with ctx.reading() as conn:
        costs = await job_breakdown(conn, batch_id, job_id)
    out = hail_job(job, batch.billing_project, redact_spec(dict(spec), batch, user))
    return {**out, "cost_breakdown": costs}


@router.get("/batches/{batch_id}/jobs/{job_id}/attempts")
async def get_attempts(
    batch_id: BatchId, job_id: JobId, ctx: Context, user: CurrentUser
) -> list[dict[str, Any]]:
    _, _, _, attempts = await visible_job(ctx, user, batch_id, job_id)
    return [attempt_status(a).model_dump() for a in attempts]


async def _logs(ctx: ApiContext, user: User, batch_id: int, job_id: int) -> dict[str, str]:
    batch, _, spec, attempts = await visible_job(ctx, user, batch_id, job_id)
    ids = [a.attempt_id for a in attempts]
    _, logs = await asyncio.to_thread(read_latest_logs, ctx.settings.log_dir, batch_id, job_id, ids)
    return {step: redact_text(text, dict(spec), batch, user) for step, text in logs.items()}


@router.get("/batches/{batch_id}/jobs/{job_id}/log")
async def get_logs(
    batch_id: BatchId, job_id: JobId, ctx: Context, user: CurrentUser
) -> dict[str, str | None]:
    logs = await _logs(ctx, user, batch_id, job_id)
    return {step: logs.get(step) for step in STEPS}


@router.get("/batches/{batch_id}/jobs/{job_id}/log/{container}", response_class=PlainTextResponse)
async def get_step_log(
    batch_id: BatchId, job_id: JobId, container: str, ctx: Context, user: CurrentUser
) -> str:
    if container not in STEPS:
        raise InvalidInput(
            f"container: {container!r} is not a step; use one of {', '.join(STEPS)}", field="container"
        )
    return (await _logs(ctx, user, batch_id, job_id)).get(container) or ""


v2_router = APIRouter(tags=["hail"])


@v2_router.get("/batches")
async def list_batches_v2(
    ctx: Context, user: CurrentUser, q: str | None = None, last_batch_id: int | None = None
) -> Any:
    return await _list_batches(ctx, user, q, last_batch_id, v2=True)


@v2_router.get("/batches/{batch_id}/job-groups/{job_group_id}/jobs")
async def list_group_jobs_v2(
    batch_id: int, job_group_id: int, ctx: Context, user: CurrentUser,
    q: str | None = None, last_job_id: int | None = None,
    recursive: Annotated[str, Query()] = "False",
) -> dict[str, Any]:
    return await _list_jobs(ctx, user, batch_id, q, last_job_id, True, job_group_id, _recursive(recursive))
