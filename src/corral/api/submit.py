"""Creating batches and updates, uploading bunches, committing, cancelling, deleting.

Route handlers (native and Hail-compatible) call these. Every bunch is validated before anything is
written, and written in one transaction, so a bad request leaves the store unchanged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.api.access import check_can_submit, owned_batch, visible_batch
from corral.api.billing_projects import check_accepts_work
from corral.api.context import SMALL_JOBS, ApiContext
from corral.api.jobspecs import prepare_bunch
from corral.api.schemas import (
    BatchSpec,
    CreateBatchResponse,
    CreateFastRequest,
    CreateUpdateResponse,
    JobSpec,
    UpdateFastRequest,
    UpdateSpec,
)
from corral.config import Settings
from corral.domain.capacity import Resources, check_placeable, collection_capacity
from corral.errors import Conflict, InvalidInput, NotFound
from corral.files.roots import file_roots
from corral.store import batches as batch_store
from corral.store import instances as instance_store
from corral.store import jobs_write
from corral.store.batches import BatchRecord, UpdateRecord
from corral.store.db import run_inline
from corral.store.jobs_write import NewJob
from corral.store.users import User

log = logging.getLogger("corral.api")


def _response(batch_id: int, upd: UpdateRecord | None) -> CreateBatchResponse:
    return CreateBatchResponse(
        id=batch_id,
        update_id=upd.update_id if upd else None,
        start_job_id=upd.start_job_id if upd else None,
    )


def _check_open(batch: BatchRecord) -> None:
    if batch.cancelled:
        raise Conflict(f"batch_id: batch {batch.id} is cancelled; it accepts no new jobs", field="batch_id")


async def _check_project(ctx: ApiContext, conn: AsyncConnection, batch: BatchRecord) -> None:
    """New work for a batch: its billing project must be open and under its spend limit (403)."""
    await check_accepts_work(conn, batch.billing_project, ctx.settings.billing.currency, field="batch_id")


async def _check_placeable(conn: AsyncConnection, rows: Sequence[NewJob], settings: Settings) -> None:
    """Refuse (400, naming the job) a job whose pool does not exist or that no instance the site can
    bring up could ever run; such a job would otherwise wait forever. With `pool_choice = "cheapest"`, a
    job on the default pool (it names none) is refused only when no pool it may be sent to can run it."""
    default_pool = settings.pool
    collections = await instance_store.site_collections(conn)
    unnamed: list[str] = []
    if settings.pool_choice == "cheapest":
        for col in settings.instance_collections:  # as configured now (the stored row may lag a restart)
            collections[col.name] = collection_capacity(col.name, col.kind, col.model_dump(mode="json"))
            if col.kind == "pool" and col.shape is not None:
                unnamed.append(col.name)
    seen: set[tuple[object, ...]] = set()
    for row in rows:
        key = (row.pool, row.cores_mcpu, row.memory_bytes, row.gpus, row.gpu_type)
        if key in seen:
            continue
        seen.add(key)
        need = Resources(row.cores_mcpu, row.memory_bytes, row.gpus, row.gpu_type)
        check_placeable(
            need, row.pool, collections, default_pool=default_pool, where=row.path, unnamed_pools=unnamed
        )


async def _notify_committed(ctx: ApiContext, batch_id: int) -> None:
    try:
        await ctx.hooks.batch_committed(batch_id)
    except Exception:  # the commit is durable; the driver also finds Ready jobs when it rebuilds
        log.exception("driver hook batch_committed(%s) failed", batch_id)


async def _notify_cancelled(ctx: ApiContext, batch_id: int) -> None:
    try:
        await ctx.hooks.batch_cancelled(batch_id)
    except Exception:  # the flag is durable; the driver also finds cancelled batches when it rebuilds
        log.exception("driver hook batch_cancelled(%s) failed", batch_id)


async def _existing(
    ctx: ApiContext, user: User, token: str
) -> tuple[BatchRecord, UpdateRecord | None] | None:
    async with ctx.reading(small=True) as conn:
        batch = await batch_store.batch_by_token(conn, user.name, token)
        if batch is None:
            return None
        return batch, await batch_store.update_by_token(conn, batch.id, token)


async def _insert_batch(
    conn: AsyncConnection, user: User, spec: BatchSpec, now: float, currency: str = "USD"
) -> int:
    await check_can_submit(conn, spec.billing_project, user)
    await check_accepts_work(conn, spec.billing_project, currency)
    return await batch_store.insert_batch(
        conn,
        user=user.name,
        billing_project=spec.billing_project,
        token=spec.token,
        attributes=spec.attributes,
        cancel_after_n_failures=spec.cancel_after_n_failures,
        callback=spec.callback,
        now=now,
    )


async def create_batch(ctx: ApiContext, user: User, spec: BatchSpec) -> CreateBatchResponse:
    """A new open batch (and its first update when n_jobs > 0). Idempotent on (user, token)."""
    found = await _existing(ctx, user, spec.token)
    if found is not None:
        return _response(found[0].id, found[1])
    now = time.time()
    try:
        async with ctx.writing(small=True) as conn:
            batch_id = await _insert_batch(conn, user, spec, now, ctx.settings.billing.currency)
            upd = None
            if spec.n_jobs > 0:
                upd = await batch_store.insert_update(
                    conn, batch_id, token=spec.token, n_jobs=spec.n_jobs, now=now
                )
    except IntegrityError:
        found = await _existing(ctx, user, spec.token)  # a concurrent request with the same token won
        if found is None:
            raise
        return _response(found[0].id, found[1])
    return _response(batch_id, upd)


async def create_fast(ctx: ApiContext, user: User, request: CreateFastRequest) -> CreateBatchResponse:
    """Create a batch with one bunch and commit it, in one transaction. Idempotent on (user, token)."""
    spec, bunch = request.batch, request.bunch
    n_jobs = spec.n_jobs or len(bunch)
    if n_jobs != len(bunch):
        raise InvalidInput(
            f"batch.n_jobs: the batch declares {spec.n_jobs} jobs but the bunch has {len(bunch)}; "
            "send all jobs in the bunch or use batches/create with several bunches",
            field="batch.n_jobs",
        )
    found = await _existing(ctx, user, spec.token)
    if found is not None:
        return _response(found[0].id, found[1])
    provisional = UpdateRecord(0, 1, spec.token, n_jobs, 1, False)
    files = file_roots(ctx.settings, user.name, spec.billing_project)
    rows = prepare_bunch(bunch, provisional, default_pool=ctx.settings.pool, files=files)
    async with ctx.reading(small=len(rows) <= SMALL_JOBS) as conn:
        await _check_placeable(conn, rows, ctx.settings)
    now = time.time()
    try:
        async with ctx.writing(small=len(rows) <= SMALL_JOBS) as conn:
            batch_id = await _insert_batch(conn, user, spec, now, ctx.settings.billing.currency)
            batch = await batch_store.get_batch(conn, batch_id, for_update=True)
            assert batch is not None
            upd = await batch_store.insert_update(conn, batch_id, token=spec.token, n_jobs=n_jobs, now=now)
            await jobs_write.insert_jobs(conn, batch, upd, rows, now)
            await jobs_write.commit_update(conn, batch, upd, now)
    except IntegrityError:
        found = await _existing(ctx, user, spec.token)
        if found is None:
            raise
        return _response(found[0].id, found[1])
    await _notify_committed(ctx, batch_id)
    return _response(batch_id, upd)


async def add_bunch(
    ctx: ApiContext, user: User, batch_id: int, update_id: int, bunch: Sequence[JobSpec]
) -> int:
    """Insert a bunch of an uncommitted update; returns how many jobs were inserted (0: a repeat)."""
    async with ctx.reading(small=True) as conn:
        seen = await owned_batch(conn, batch_id, user, "append jobs to it")
        upd = await batch_store.get_update(conn, batch_id, update_id)
    if upd is None:
        raise NotFound(f"update_id: batch {batch_id} has no update {update_id}", field="update_id")
    files = file_roots(ctx.settings, user.name, seen.billing_project)
    rows = prepare_bunch(bunch, upd, default_pool=ctx.settings.pool, files=files)
    async with ctx.writing(small=len(rows) <= SMALL_JOBS) as conn:
        await _check_placeable(conn, rows, ctx.settings)
        batch = await owned_batch(conn, batch_id, user, "append jobs to it")
        _check_open(batch)
        # A shared lock on the update: bunches go in parallel, a commit waits for them.
        locked = await batch_store.get_update(conn, batch_id, update_id, for_share=True)
        if locked is None or locked.committed:
            raise Conflict(
                f"update_id: update {update_id} of batch {batch_id} is already committed; create a new "
                "update to add jobs",
                field="update_id",
            )
        return await jobs_write.insert_jobs(conn, batch, locked, rows, time.time())


async def commit(ctx: ApiContext, user: User, batch_id: int, update_id: int) -> UpdateRecord:
    """Commit an update (idempotent): its jobs join the batch and the parentless ones become Ready."""
    async with ctx.writing(small=True) as conn:
        batch = await owned_batch(conn, batch_id, user, "commit jobs to it", for_update=True)
        upd = await batch_store.get_update(conn, batch_id, update_id, for_update=True)
        if upd is None:
            raise NotFound(f"update_id: batch {batch_id} has no update {update_id}", field="update_id")
        if upd.n_jobs > SMALL_JOBS:
            await run_inline(conn, False)
        if not upd.committed:
            _check_open(batch)
            await _check_project(ctx, conn, batch)
        result = await jobs_write.commit_update(conn, batch, upd, time.time())
    if result.newly_committed:
        await _notify_committed(ctx, batch_id)
    return upd


async def create_update(ctx: ApiContext, user: User, batch_id: int, spec: UpdateSpec) -> CreateUpdateResponse:
    """A new update appending jobs to the batch. Idempotent on (batch, token)."""
    async with ctx.writing(small=True) as conn:
        batch = await owned_batch(conn, batch_id, user, "append jobs to it", for_update=True)
        upd = await batch_store.update_by_token(conn, batch_id, spec.token)
        if upd is None:
            _check_open(batch)
            await _check_project(ctx, conn, batch)
            upd = await batch_store.insert_update(
                conn, batch_id, token=spec.token, n_jobs=spec.n_jobs, now=time.time()
            )
    return CreateUpdateResponse(update_id=upd.update_id, start_job_id=upd.start_job_id)


async def update_fast(
    ctx: ApiContext, user: User, batch_id: int, request: UpdateFastRequest
) -> CreateUpdateResponse:
    """Create an update with one bunch and commit it, in one transaction. Idempotent on (batch, token)."""
    spec, bunch = request.update, request.bunch
    if spec.n_jobs != len(bunch):
        raise InvalidInput(
            f"update.n_jobs: the update declares {spec.n_jobs} jobs but the bunch has {len(bunch)}",
            field="update.n_jobs",
        )
    now = time.time()
    async with ctx.writing(small=len(bunch) <= SMALL_JOBS) as conn:
        batch = await owned_batch(conn, batch_id, user, "append jobs to it", for_update=True)
        upd = await batch_store.update_by_token(conn, batch_id, spec.token)
        if upd is not None and upd.committed:
            return CreateUpdateResponse(update_id=upd.update_id, start_job_id=upd.start_job_id)
        _check_open(batch)
        await _check_project(ctx, conn, batch)
        if upd is None:
            upd = await batch_store.insert_update(
                conn, batch_id, token=spec.token, n_jobs=spec.n_jobs, now=now
            )
        files = file_roots(ctx.settings, user.name, batch.billing_project)
        rows = prepare_bunch(bunch, upd, default_pool=ctx.settings.pool, files=files)
        await _check_placeable(conn, rows, ctx.settings)
        await jobs_write.insert_jobs(conn, batch, upd, rows, now)
        await jobs_write.commit_update(conn, batch, upd, now)
    await _notify_committed(ctx, batch_id)
    return CreateUpdateResponse(update_id=upd.update_id, start_job_id=upd.start_job_id)


async def cancel(ctx: ApiContext, user: User, batch_id: int) -> None:
    async with ctx.writing() as conn:
        await visible_batch(conn, batch_id, user, for_update=True)
        await batch_store.set_batch_cancelled(conn, batch_id)
    await _notify_cancelled(ctx, batch_id)


async def delete(ctx: ApiContext, user: User, batch_id: int) -> None:
    """Cancel the batch if it is still running, then hide it: afterwards it is 404 everywhere."""
    async with ctx.writing() as conn:
        batch = await owned_batch(conn, batch_id, user, "delete it", for_update=True)
        running = not batch.complete
        if running:
            await batch_store.set_batch_cancelled(conn, batch_id)
        await batch_store.mark_batch_deleted(conn, batch_id)
    if running:
        await _notify_cancelled(ctx, batch_id)
