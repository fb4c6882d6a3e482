"""The sessions and sweeps pages' queries: sessions paged by id, sweeps' batches by their attributes."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.store.bench import SessionRecord
from corral.store.tables import bench_sessions

COLUMNS = [bench_sessions.c[f] for f in SessionRecord.__dataclass_fields__]


async def sessions_page(
    conn: AsyncConnection, viewer: str | None, *, before_id: int | None, limit: int
) -> list[SessionRecord]:
    """Newest first, ids below `before_id`; the viewer's own (viewer None: every user's, for admins) —
    the rule of the API's session list."""
    query = select(*COLUMNS).order_by(bench_sessions.c.id.desc()).limit(limit)
    if viewer is not None:
        query = query.where(bench_sessions.c.user == viewer)
    if before_id is not None:
        query = query.where(bench_sessions.c.id < before_id)
    return [SessionRecord(*row) for row in await conn.execute(query)]


async def session_of_batch(conn: AsyncConnection, batch_id: int, viewer: str | None) -> int | None:
    """The id of the newest session run as this batch that `viewer` may open (None: every user's)."""
    query = select(bench_sessions.c.id).where(bench_sessions.c.batch_id == batch_id)
    if viewer is not None:
        query = query.where(bench_sessions.c.user == viewer)
    found = await conn.execute(query.order_by(bench_sessions.c.id.desc()).limit(1))
    value = found.scalar_one_or_none()
    return None if value is None else int(value)
