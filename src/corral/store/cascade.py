"""Named queries of the completion cascade: jobs that just completed make children Ready or cancel them.

Each completion costs O(its children): the children's pending-parent counts are decremented by the
parents that completed in this transaction (every parent moves to a complete state exactly once, by
`move_jobs`, in the same transaction as the decrement). Committing an update recounts from the parents'
states (store.jobs_write), which settles children inserted while a parent was completing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from sqlalchemy import Boolean, and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.domain.batches import CountDelta
from corral.domain.states import NOT_SUCCESS_STATES, JobState
from corral.store.batch_state import apply_batch_deltas
from corral.store.driver_records import CascadeResult, QueuedJob
from corral.store.job_moves import JobKey, JobMove, chunks
from corral.store.rebuild import queued, queued_job_query
from corral.store.tables import batch_updates, job_parents, jobs

# Built once: every tick with a completion runs them (see store.job_moves.JobMove).
_MAKE_READY = JobMove(JobState.READY, only_from={JobState.PENDING})
_CANCEL_PENDING = JobMove(JobState.CANCELLED, only_from={JobState.PENDING},
                          values={"time_completed": bindparam("now")})
_CHILDREN = select(job_parents.c.job_id, job_parents.c.parent_id).where(
    job_parents.c.batch_id == bindparam("b"), job_parents.c.parent_id.in_(bindparam("ids", expanding=True))
)
_RELEASE = (
    update(jobs)
    .where(jobs.c.batch_id == bindparam("b"), jobs.c.job_id == bindparam("j"))
    .where(jobs.c.state == JobState.PENDING)
    .values(
        n_pending_parents=jobs.c.n_pending_parents - bindparam("done"),
        parent_failed=jobs.c.parent_failed | bindparam("failed", type_=Boolean),
    )
)
_NEWLY_READY = (
    queued_job_query()
    .join(
        batch_updates,
        and_(batch_updates.c.batch_id == jobs.c.batch_id, batch_updates.c.update_id == jobs.c.update_id),
    )
    .where(jobs.c.batch_id == bindparam("b"), jobs.c.job_id.in_(bindparam("ids", expanding=True)))
    .where(jobs.c.state == JobState.PENDING, jobs.c.n_pending_parents <= 0)
    .where(batch_updates.c.committed.is_(True))
)


async def complete_jobs(
    conn: AsyncConnection,
    completed: Sequence[tuple[int, int, JobState]],
    now: float,
    *,
    usage: dict[int, tuple[int, float]] | None = None,
) -> CascadeResult:
    """Jobs this transaction just moved to a complete state: count them, then make children Ready or
    cancel them (a child whose parent did not succeed is cancelled unless always_run); cancellations
    cascade level by level."""
    result = CascadeResult()
    deltas: dict[int, CountDelta] = defaultdict(CountDelta)
    level = list(completed)
    while level:
        for batch_id, _job_id, state in level:
            deltas[batch_id].add(state)
        children = await _release_children(conn, level)
        level = []
        if not children:
            break
        new_ready: list[QueuedJob] = []
        for job in await _newly_ready(conn, children):
            if job.doomed and not job.always_run:
                level.append((job.job.batch_id, job.job.job_id, JobState.CANCELLED))
            else:
                new_ready.append(job)
        if new_ready:
            keys = [{"b": q.job.batch_id, "j": q.job.job_id} for q in new_ready]
            await _MAKE_READY.run(conn, keys)
            result.ready.extend(new_ready)
        if level:
            await _CANCEL_PENDING.run(conn, [{"b": b, "j": j, "now": now} for b, j, _ in level])
    await apply_batch_deltas(conn, deltas, usage or {}, now, result)
    return result


async def _release_children(
    conn: AsyncConnection, parents: Sequence[tuple[int, int, JobState]]
) -> set[JobKey]:
    """Decrement the pending-parent count of the children of these just-completed parents (and mark
    those with a parent that did not succeed); returns the children."""
    failed_parents = {(b, j) for b, j, state in parents if state in NOT_SUCCESS_STATES}
    released: dict[JobKey, list[int]] = defaultdict(lambda: [0, 0])  # child -> [n parents done, n failed]
    for batch_id, ids in chunks((b, j) for b, j, _ in parents):
        rows = await conn.execute(_CHILDREN, {"b": batch_id, "ids": ids})
        for row in rows:
            counts = released[(batch_id, row.job_id)]
            counts[0] += 1
            counts[1] += (batch_id, row.parent_id) in failed_parents
    if released:
        await conn.execute(
            _RELEASE,
            [{"b": b, "j": j, "done": n, "failed": bool(f)} for (b, j), (n, f) in released.items()],
        )
    return set(released)


async def _newly_ready(conn: AsyncConnection, children: set[JobKey]) -> list[QueuedJob]:
    """Children now without pending parents, in committed updates (others wait for their commit)."""
    ready: list[QueuedJob] = []
    for batch_id, ids in chunks(children):
        rows = await conn.execute(_NEWLY_READY, {"b": batch_id, "ids": ids})
        ready.extend(queued(row) for row in rows)
    return ready
