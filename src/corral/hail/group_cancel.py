"""Cancelling a job group: it and every group below it are marked cancelled in the store (durable;
the driver re-reads cancelled groups with unfinished jobs when it rebuilds), then the driver is told."""

from __future__ import annotations

import logging

from corral.api.access import visible_batch
from corral.api.context import ApiContext
from corral.errors import NotFound
from corral.hail.job_groups import descendants
from corral.store import job_groups as group_store
from corral.store.users import User

log = logging.getLogger("corral.hail")


async def cancel_group(ctx: ApiContext, user: User, batch_id: int, job_group_id: int) -> set[int]:
    async with ctx.writing() as conn:
        await visible_batch(conn, batch_id, user, for_update=True)
        groups = await group_store.list_groups(conn, batch_id)
        if job_group_id not in {g.job_group_id for g in groups}:
            raise NotFound(
                f"job_group_id: batch {batch_id} has no job group {job_group_id}", field="job_group_id"
            )
        doomed = descendants(groups, job_group_id)
        await group_store.set_cancelled(conn, batch_id, sorted(doomed))
    try:
        await ctx.hooks.job_groups_cancelled(batch_id, doomed)
    except Exception:  # the flags are durable; the driver also finds cancelled groups when it rebuilds
        log.exception("driver hook job_groups_cancelled(%s) failed", batch_id)
    return doomed
