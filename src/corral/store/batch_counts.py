"""Named query: how many of a batch's jobs are in each live state (for progress: queued, running)."""

from __future__ import annotations

from sqlalchemy import bindparam, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.domain.states import JobState
from corral.store.tables import jobs

LIVE_STATES = (JobState.PENDING, JobState.READY, JobState.RUNNING)


async def live_state_counts(conn: AsyncConnection, batch_id: int) -> dict[str, int]:
    """{state: n} for Pending, Ready and Running jobs of the batch (absent states count 0)."""
    rows = await conn.execute(
        select(jobs.c.state, func.count())
        .where(jobs.c.batch_id == batch_id, jobs.c.state.in_([s.value for s in LIVE_STATES]))
        .group_by(jobs.c.state)
    )
    counts = {s.value: 0 for s in LIVE_STATES}
    counts.update({str(state): int(n) for state, n in rows})
    return counts


_LIVE = (
    select(jobs.c.state, func.count(), func.count(jobs.c.waiting_reason))
    .where(jobs.c.batch_id == bindparam("b"), jobs.c.state.in_([s.value for s in LIVE_STATES]))
    .group_by(jobs.c.state)
)


async def live_counts_and_waiting(conn: AsyncConnection, batch_id: int) -> tuple[dict[str, int], int]:
    """`live_state_counts`, and how many of the Ready jobs wait with a reason (they fit no instance their
    pool can bring up): one query, for a batch's status."""
    counts = {s.value: 0 for s in LIVE_STATES}
    waiting = 0
    for state, n, with_reason in await conn.execute(_LIVE, {"b": batch_id}):
        counts[str(state)] = int(n)
        if state == JobState.READY:
            waiting = int(with_reason)
    return counts, waiting
