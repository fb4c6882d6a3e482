"""Named queries for job groups (Hail's nested groups of jobs in a batch; 0 is the batch itself).

An update reserves a contiguous range of group ids when it is created (job_group_updates); its groups
are inserted before its jobs and become visible when the update is committed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.domain.job_groups import descendants
from corral.domain.states import INCOMPLETE_STATES
from corral.store.tables import batch_updates, batches, job_group_updates, job_groups, jobs

_INCOMPLETE = tuple(sorted(INCOMPLETE_STATES))


@dataclass(frozen=True, slots=True)
class JobGroupRecord:
    batch_id: int
    job_group_id: int
    update_id: int
    parent_id: int
    attributes: dict[str, str]
    callback: str | None
    cancelled: bool
    time_created: float
    cancel_after_n_failures: int | None = None


@dataclass(slots=True)
class StateCounts:
    """Jobs of one group by state, with their cost and the last completion time."""

    by_state: dict[str, int] = field(default_factory=dict)
    cost: float = 0.0
    msec_mcpu: int = 0
    time_completed: float | None = None

    def add(self, other: StateCounts) -> None:
        for state, n in other.by_state.items():
            self.by_state[state] = self.by_state.get(state, 0) + n
        self.cost += other.cost
        self.msec_mcpu += other.msec_mcpu
        if other.time_completed is not None:
            self.time_completed = max(self.time_completed or 0.0, other.time_completed)


async def reserve(conn: AsyncConnection, batch_id: int, update_id: int, n_job_groups: int) -> int:
    """The update's first group id (idempotent): the range follows every range reserved before."""
    found = await update_range(conn, batch_id, update_id)
    if found is not None:
        return found[0]
    # Lock the batch row: concurrent updates of one batch must not reserve overlapping ranges.
    await conn.execute(select(batches.c.id).where(batches.c.id == batch_id).with_for_update())
    found = await update_range(conn, batch_id, update_id)
    if found is not None:
        return found[0]
    end = (
        await conn.execute(
            select(func.max(job_group_updates.c.start_job_group_id + job_group_updates.c.n_job_groups)).where(
                job_group_updates.c.batch_id == batch_id
            )
        )
    ).scalar()
    start = int(end or 1)
    await conn.execute(
        job_group_updates.insert().values(
            batch_id=batch_id, update_id=update_id, start_job_group_id=start, n_job_groups=n_job_groups
        )
    )
    return start


async def update_range(conn: AsyncConnection, batch_id: int, update_id: int) -> tuple[int, int] | None:
    """(start_job_group_id, n_job_groups) reserved by the update, or None."""
    row = (
        await conn.execute(
            select(job_group_updates.c.start_job_group_id, job_group_updates.c.n_job_groups).where(
                job_group_updates.c.batch_id == batch_id, job_group_updates.c.update_id == update_id
            )
        )
    ).first()
    return None if row is None else (int(row.start_job_group_id), int(row.n_job_groups))


async def insert(conn: AsyncConnection, rows: Sequence[dict[str, Any]]) -> int:
    """Insert groups not yet there (a retried bunch inserts nothing); returns how many were new."""
    if not rows:
        return 0
    batch_id = rows[0]["batch_id"]
    existing = {
        r.job_group_id
        for r in await conn.execute(
            select(job_groups.c.job_group_id).where(
                job_groups.c.batch_id == batch_id,
                job_groups.c.job_group_id.in_([r["job_group_id"] for r in rows]),
            )
        )
    }
    new = [r for r in rows if r["job_group_id"] not in existing]
    if new:
        await conn.execute(job_groups.insert(), new)
    return len(new)


async def count_in_update(conn: AsyncConnection, batch_id: int, update_id: int) -> int:
    query = select(func.count()).where(job_groups.c.batch_id == batch_id, job_groups.c.update_id == update_id)
    return int((await conn.execute(query)).scalar() or 0)


_GROUP_COLUMNS = [job_groups.c[name] for name in JobGroupRecord.__slots__]  # type: ignore[attr-defined]


async def list_groups(
    conn: AsyncConnection, batch_id: int, *, committed_only: bool = True
) -> list[JobGroupRecord]:
    query = select(*_GROUP_COLUMNS).where(job_groups.c.batch_id == batch_id)
    if committed_only:
        query = query.join(
            batch_updates,
            and_(batch_updates.c.batch_id == job_groups.c.batch_id,
                 batch_updates.c.update_id == job_groups.c.update_id),
        ).where(batch_updates.c.committed.is_(True))
    rows = await conn.execute(query.order_by(job_groups.c.job_group_id))
    out = []
    for row in rows:
        values = dict(row._mapping)
        values["attributes"] = dict(values["attributes"] or {})
        values["cancelled"] = bool(values["cancelled"])
        out.append(JobGroupRecord(**values))
    return out


async def job_counts(conn: AsyncConnection, batch_id: int) -> dict[int, StateCounts]:
    """Committed jobs of the batch counted per (own) group and state."""
    rows = await conn.execute(
        select(
            jobs.c.job_group_id, jobs.c.state, func.count().label("n"), func.sum(jobs.c.cost).label("cost"),
            func.sum(jobs.c.msec_mcpu).label("msec_mcpu"), func.max(jobs.c.time_completed).label("done"),
        )
        .join(batch_updates, and_(batch_updates.c.batch_id == jobs.c.batch_id,
                                  batch_updates.c.update_id == jobs.c.update_id))
        .where(jobs.c.batch_id == batch_id, batch_updates.c.committed.is_(True))
        .group_by(jobs.c.job_group_id, jobs.c.state)
    )
    out: dict[int, StateCounts] = defaultdict(StateCounts)
    for row in rows:
        counts = StateCounts({row.state: int(row.n)}, float(row.cost or 0), int(row.msec_mcpu or 0), row.done)
        out[int(row.job_group_id)].add(counts)
    return dict(out)


async def set_cancelled(conn: AsyncConnection, batch_id: int, group_ids: Sequence[int]) -> None:
    await conn.execute(
        update(job_groups)
        .where(job_groups.c.batch_id == batch_id, job_groups.c.job_group_id.in_(list(group_ids)))
        .values(cancelled=True)
    )


async def cancelled_with_work(conn: AsyncConnection) -> dict[int, set[int]]:
    """Cancelled groups that still have unfinished jobs: the driver (re)applies their cancellation."""
    rows = await conn.execute(
        select(jobs.c.batch_id, jobs.c.job_group_id)
        .distinct()
        .join(job_groups, and_(job_groups.c.batch_id == jobs.c.batch_id,
                               job_groups.c.job_group_id == jobs.c.job_group_id))
        .where(job_groups.c.cancelled.is_(True), jobs.c.state.in_(_INCOMPLETE), jobs.c.always_run.is_(False))
    )
    out: dict[int, set[int]] = defaultdict(set)
    for row in rows:
        out[int(row.batch_id)].add(int(row.job_group_id))
    return dict(out)


async def cancel_over_failure_limit(conn: AsyncConnection, batch_ids: Iterable[int]) -> dict[int, set[int]]:
    """Groups (with every group below them) whose tree reached its cancel_after_n_failures: marked
    cancelled here; the caller cancels their jobs. Only batches with such limits cost more than a query."""
    limited = list(
        await conn.execute(
            select(job_groups.c.batch_id).distinct().where(
                job_groups.c.batch_id.in_(sorted(batch_ids)), job_groups.c.cancelled.is_(False),
                job_groups.c.cancel_after_n_failures.is_not(None),
            )
        )
    )
    out: dict[int, set[int]] = {}
    for row in limited:
        batch_id = int(row.batch_id)
        groups = await list_groups(conn, batch_id)
        links = [(g.job_group_id, g.parent_id) for g in groups]
        failed = {
            int(r.job_group_id): int(r.n)
            for r in await conn.execute(
                select(jobs.c.job_group_id, func.count().label("n"))
                .where(jobs.c.batch_id == batch_id, jobs.c.state.in_(("Failed", "Error")))
                .group_by(jobs.c.job_group_id)
            )
        }
        doomed: set[int] = set()
        for g in groups:
            if g.cancelled or g.cancel_after_n_failures is None or g.job_group_id in doomed:
                continue
            tree = descendants(links, g.job_group_id)
            if sum(failed.get(member, 0) for member in tree) >= g.cancel_after_n_failures:
                doomed |= tree
        if doomed:
            await set_cancelled(conn, batch_id, sorted(doomed))
            out[batch_id] = doomed
    return out
