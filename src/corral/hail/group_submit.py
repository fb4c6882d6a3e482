"""Submitting job groups with their jobs: reserve the update's group ids, insert the groups, resolve
each job's group, then the usual bunch and commit (corral.api.submit)."""

from __future__ import annotations

import time
from collections.abc import Sequence

from corral.api import submit
from corral.api.access import owned_batch
from corral.api.context import ApiContext
from corral.api.jobspecs import prepare_bunch
from corral.api.schemas import JobSpec
from corral.errors import Conflict, InvalidInput, NotFound
from corral.hail.job_groups import JobGroupSpec, group_rows, resolve_job_groups
from corral.store import batches as batch_store
from corral.store import job_groups as group_store
from corral.store.batches import UpdateRecord
from corral.store.job_groups import JobGroupRecord
from corral.store.users import User


async def existing_groups(ctx: ApiContext, batch_id: int) -> dict[int, JobGroupRecord]:
    async with ctx.reading() as conn:
        found = await group_store.list_groups(conn, batch_id, committed_only=False)
    return {g.job_group_id: g for g in found}


async def reserve(ctx: ApiContext, batch_id: int, update_id: int, n_groups: int) -> int:
    async with ctx.writing() as conn:
        return await group_store.reserve(conn, batch_id, update_id, n_groups)


async def update_range(ctx: ApiContext, batch_id: int, update_id: int) -> tuple[int, int] | None:
    async with ctx.reading() as conn:
        return await group_store.update_range(conn, batch_id, update_id)


def dry_run(
    ctx: ApiContext, specs: Sequence[JobGroupSpec], bunch: Sequence[JobSpec], *, start: int, n_jobs: int,
    existing: dict[int, JobGroupRecord],
) -> None:
    """Validate groups and jobs as they would be written, on copies, before anything is written."""
    group_rows(specs, batch_id=0, update_id=0, start=start, n_groups=len(specs), existing=existing,
               now=0.0, field="job_groups")
    copies = [job.model_copy() for job in bunch]
    resolve_job_groups(copies, start=start, n_groups=len(specs), existing=existing, field="bunch")
    prepare_bunch(copies, UpdateRecord(0, 1, "dry", n_jobs, 1, False), default_pool=ctx.settings.pool)


async def add_groups(
    ctx: ApiContext, user: User, batch_id: int, update_id: int, specs: Sequence[JobGroupSpec]
) -> int:
    """Insert a bunch of group specs of an uncommitted update (a repeat inserts nothing)."""
    reserved = await update_range(ctx, batch_id, update_id)
    if reserved is None:
        raise NotFound(
            f"update_id: update {update_id} of batch {batch_id} declared no job groups; give n_job_groups "
            "when creating it",
            field="update_id",
        )
    start, n_groups = reserved
    existing = await existing_groups(ctx, batch_id)
    rows = group_rows(specs, batch_id=batch_id, update_id=update_id, start=start, n_groups=n_groups,
                      existing=existing, now=time.time(), field="job_groups")
    async with ctx.writing() as conn:
        await owned_batch(conn, batch_id, user, "append job groups to it")
        upd = await batch_store.get_update(conn, batch_id, update_id, for_share=True)
        if upd is None or upd.committed:
            raise Conflict(
                f"update_id: update {update_id} of batch {batch_id} is missing or already committed",
                field="update_id",
            )
        return await group_store.insert(conn, rows)


async def resolve_bunch(ctx: ApiContext, batch_id: int, update_id: int | None, bunch: list[JobSpec]) -> None:
    reserved = None if update_id is None else await update_range(ctx, batch_id, update_id)
    start, n_groups = reserved if reserved is not None else (None, 0)
    existing = await existing_groups(ctx, batch_id)
    resolve_job_groups(bunch, start=start, n_groups=n_groups, existing=existing, field="bunch")


async def check_groups_complete(ctx: ApiContext, batch_id: int, update_id: int) -> None:
    reserved = await update_range(ctx, batch_id, update_id)
    if reserved is None:
        return
    async with ctx.reading() as conn:
        have = await group_store.count_in_update(conn, batch_id, update_id)
    if have < reserved[1]:
        raise InvalidInput(
            f"job_groups: update {update_id} declared {reserved[1]} job groups but {have} were sent; send "
            "the rest with job-groups/create before committing",
            field="job_groups",
        )


async def submit_with_groups(
    ctx: ApiContext, user: User, batch_id: int, update_id: int, specs: Sequence[JobGroupSpec],
    bunch: list[JobSpec],
) -> UpdateRecord:
    """Groups, jobs, commit: each step idempotent, so a client retry after a crash completes it."""
    await reserve(ctx, batch_id, update_id, len(specs))
    await add_groups(ctx, user, batch_id, update_id, specs)
    await resolve_bunch(ctx, batch_id, update_id, bunch)
    await submit.add_bunch(ctx, user, batch_id, update_id, bunch)
    return await submit.commit(ctx, user, batch_id, update_id)
