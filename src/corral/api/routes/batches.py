"""Batch routes: create (fast or in bunches), updates, commit, cancel, delete, list, status."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request

from corral.api import submit
from corral.api.access import visible_batch
from corral.api.auth import CurrentUser
from corral.api.context import SMALL_JOBS, ApiContext, Context
from corral.api.convert import batch_status
from corral.api.costs import batch_breakdowns
from corral.api.gcpause import gc_paused
from corral.api.jobspecs import check_root_job_group, parse_bunch
from corral.api.params import BatchCursor, BatchId, UpdateId
from corral.api.query import batch_predicate
from corral.api.schemas import (
    BatchList,
    BatchSpec,
    BatchStatus,
    CreateBatchResponse,
    CreateFastRequest,
    CreateUpdateResponse,
    UpdateFastRequest,
    UpdateSpec,
)
from corral.store import batches as batch_store
from corral.store.batch_counts import live_counts_and_waiting
from corral.store.db import run_inline
from corral.store.users import User

router = APIRouter(prefix="/api/v1/batches", tags=["batches"])


@router.post("/create-fast")
async def create_fast(body: CreateFastRequest, ctx: Context, user: CurrentUser) -> CreateBatchResponse:
    check_root_job_group(body.bunch)
    return await submit.create_fast(ctx, user, body)


@router.post("/create")
async def create(body: BatchSpec, ctx: Context, user: CurrentUser) -> CreateBatchResponse:
    return await submit.create_batch(ctx, user, body)


@router.post("/{batch_id}/updates/create")
async def create_update(
    batch_id: BatchId, body: UpdateSpec, ctx: Context, user: CurrentUser
) -> CreateUpdateResponse:
    return await submit.create_update(ctx, user, batch_id, body)


@router.post("/{batch_id}/update-fast")
async def update_fast(
    batch_id: BatchId, body: UpdateFastRequest, ctx: Context, user: CurrentUser
) -> CreateUpdateResponse:
    check_root_job_group(body.bunch)
    return await submit.update_fast(ctx, user, batch_id, body)


_BUNCH_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {
                "schema": {"type": "array", "items": {"$ref": "#/components/schemas/JobSpec"}}
            }
        },
    }
}


@router.post("/{batch_id}/updates/{update_id}/jobs/create", openapi_extra=_BUNCH_BODY)
async def create_jobs(
    batch_id: BatchId, update_id: UpdateId, request: Request, ctx: Context, user: CurrentUser
) -> dict[str, int]:
    """A bunch: a JSON list of JobSpec (ids within the update's 1..n_jobs). Parsed here, not by FastAPI,
    so a large bunch is read with orjson and validated with the garbage collector paused."""
    body = await request.body()
    with gc_paused():
        bunch = parse_bunch(body)
        del body
        check_root_job_group(bunch)
        inserted = await submit.add_bunch(ctx, user, batch_id, update_id, bunch)
        # Free the bunch while the collector is still paused: alive at its re-enabling, its few hundred
        # thousand objects would be scanned by the full collection that the paused allocations trigger.
        del bunch
    return {"inserted": inserted}


@router.patch("/{batch_id}/updates/{update_id}/commit")
async def commit_update(
    batch_id: BatchId, update_id: UpdateId, ctx: Context, user: CurrentUser
) -> dict[str, int]:
    upd = await submit.commit(ctx, user, batch_id, update_id)
    return {"update_id": upd.update_id, "start_job_id": upd.start_job_id}


@router.patch("/{batch_id}/cancel")
async def cancel(batch_id: BatchId, ctx: Context, user: CurrentUser) -> dict[str, Any]:
    await submit.cancel(ctx, user, batch_id)
    return {}


@router.delete("/{batch_id}")
async def delete(batch_id: BatchId, ctx: Context, user: CurrentUser) -> dict[str, Any]:
    await submit.delete(ctx, user, batch_id)
    return {}


@router.get("")
async def list_batches(
    ctx: Context,
    user: CurrentUser,
    q: str | None = None,
    last_batch_id: BatchCursor = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 50,
) -> BatchList:
    """Newest first; page with the returned last_batch_id. `q`: Hail v1 terms (k=v, has:k, states, !)."""
    predicate = batch_predicate(q)
    async with ctx.reading() as conn:
        found = await batch_store.list_batches(
            conn,
            viewer=None if user.is_admin else user.name,
            last_batch_id=last_batch_id,
            limit=limit,
            predicate=predicate,
        )
        costs = await batch_breakdowns(conn, [b.id for b in found])
    return BatchList(
        batches=[batch_status(b).model_copy(update={"cost_breakdown": costs[b.id]}) for b in found],
        last_batch_id=found[-1].id if len(found) == limit else None,
    )


MAX_WAIT_SECONDS = 60.0
# A waiting request re-reads the batch this often even without a completion from the driver (one that
# another server process's driver made, or a path that completes a batch outside the tick).
RECHECK_SECONDS = 1.0


@router.get("/{batch_id}")
async def get_batch(
    batch_id: BatchId,
    ctx: Context,
    user: CurrentUser,
    wait: Annotated[float, Query(
        ge=0, le=MAX_WAIT_SECONDS,
        description="seconds to wait for the batch to complete before answering (0: answer now); the "
        "answer comes the moment it completes",
    )] = 0.0,
) -> BatchStatus:
    deadline = time.monotonic() + wait
    while True:
        # Watched before the read: a completion between the read and the wait still wakes it.
        completion = ctx.hooks.completion_of(batch_id) if wait > 0 else None
        try:
            status = await _batch_status(ctx, batch_id, user)
            remaining = deadline - time.monotonic()
            if status.complete or completion is None or remaining <= 0:
                return status
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(completion), min(remaining, RECHECK_SECONDS))
        finally:
            if completion is not None:
                completion.cancel()


async def _batch_status(ctx: ApiContext, batch_id: int, user: User) -> BatchStatus:
    async with ctx.reading(small=True) as conn:
        batch = await visible_batch(conn, batch_id, user)
        costs = await batch_breakdowns(conn, [batch.id])
        status = batch_status(batch).model_copy(update={"cost_breakdown": costs[batch.id]})
        status.waiting = 0  # a complete batch has no live jobs: nothing waits
        if not status.complete:
            if batch.n_jobs > SMALL_JOBS:  # counting its live jobs is not small
                await run_inline(conn, False)
            counts, status.waiting = await live_counts_and_waiting(conn, batch_id)
            status.n_pending, status.n_ready, status.n_running = (
                counts["Pending"], counts["Ready"], counts["Running"]
            )
        return status
