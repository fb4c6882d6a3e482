"""Named queries of cancellation: a batch's (or some job groups') unfinished jobs, and doomed ready jobs."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.domain.states import INCOMPLETE_STATES, JobState
from corral.store.batch_state import refresh_batch_states
from corral.store.cascade import complete_jobs
from corral.store.driver_records import CancelResult, CascadeResult
from corral.store.job_moves import JobKey, move_jobs, state_in
from corral.store.tables import attempts, batch_updates, jobs

CANCEL_CHUNK = 5_000  # jobs cancelled per tick: a huge cancel must not hold the write lock for long


async def cancel_batch_jobs(
    conn: AsyncConnection, batch_id: int, now: float, *, job_group_ids: Collection[int] | None = None,
    limit: int = CANCEL_CHUNK,
) -> CancelResult:
    """Cancel the unfinished jobs of committed updates of the batch that are not always_run (only those
    of the given job groups, when given), at most `limit` of them; `more` says the rest wait a tick."""
    query = (
        select(jobs.c.job_id, jobs.c.state, jobs.c.n_attempts)
        .join(batch_updates, and_(batch_updates.c.batch_id == jobs.c.batch_id,
                                  batch_updates.c.update_id == jobs.c.update_id))
        .where(jobs.c.batch_id == batch_id, state_in(jobs.c.state, INCOMPLETE_STATES))
        .where(jobs.c.always_run.is_(False), batch_updates.c.committed.is_(True))
    )
    if job_group_ids is not None:
        query = query.where(jobs.c.job_group_id.in_(sorted(job_group_ids)))
    rows = list(await conn.execute(query.order_by(jobs.c.job_id).limit(limit)))
    killed: list[tuple[int, int, int, str]] = []
    active = [r for r in rows if r.state == JobState.RUNNING]
    if active:
        found = await conn.execute(
            select(attempts.c.job_id, attempts.c.attempt_id, attempts.c.instance_name).where(
                attempts.c.batch_id == batch_id,
                attempts.c.job_id.in_([r.job_id for r in active]),
                attempts.c.state == "running",
            )
        )
        killed = [(batch_id, a.job_id, a.attempt_id, a.instance_name) for a in found]
        if killed:
            await conn.execute(
                update(attempts)
                .where(attempts.c.batch_id == bindparam("b"), attempts.c.job_id == bindparam("j"),
                       attempts.c.attempt_id == bindparam("a"), attempts.c.state == "running")
                .values(state="ended", end_reason="cancelled", time_ended=now),
                [{"b": b, "j": j, "a": a} for b, j, a, _ in killed],
            )
    await move_jobs(conn, JobState.CANCELLED, [{"b": batch_id, "j": r.job_id} for r in rows],
                    values={"time_completed": now})
    cascade = await complete_jobs(conn, [(batch_id, r.job_id, JobState.CANCELLED) for r in rows], now)
    if not rows:
        await refresh_batch_states(conn, [batch_id], now, cascade)
    return CancelResult(cascade, killed, more=len(rows) >= limit)


async def cancel_ready_jobs(conn: AsyncConnection, keys: Sequence[JobKey], now: float) -> CascadeResult:
    """Ready jobs that must not run (parent failed, batch cancelled): Cancelled, with the cascade."""
    if not keys:
        return CascadeResult()
    await move_jobs(conn, JobState.CANCELLED, [{"b": b, "j": j} for b, j in keys],
                    only_from={JobState.READY}, values={"time_completed": now})
    return await complete_jobs(conn, [(b, j, JobState.CANCELLED) for b, j in keys], now)
