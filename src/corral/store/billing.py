"""Named queries of billing projects' lifecycle: status (open | closed | deleted), spend limit, the
batches that keep a project from being deleted and those a spend limit cancels."""

from __future__ import annotations

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.store.tables import batches, billing_projects

OPEN, CLOSED, DELETED = "open", "closed", "deleted"


async def set_status(conn: AsyncConnection, name: str, status: str) -> None:
    await conn.execute(update(billing_projects).where(billing_projects.c.name == name).values(status=status))


async def set_limit(conn: AsyncConnection, name: str, limit: float | None) -> None:
    await conn.execute(
        update(billing_projects).where(billing_projects.c.name == name).values(spend_limit=limit)
    )


async def limits(conn: AsyncConnection) -> dict[str, float]:
    """Projects that have a spend limit (deleted ones too: their running work is gone anyway)."""
    rows = await conn.execute(
        select(billing_projects.c.name, billing_projects.c.spend_limit)
        .where(billing_projects.c.spend_limit.is_not(None))
    )
    return {r.name: float(r.spend_limit) for r in rows}


async def running_batches(conn: AsyncConnection, project: str) -> list[int]:
    """Committed batches of the project that have not completed (they keep it from being deleted)."""
    rows = await conn.execute(
        select(batches.c.id).where(
            batches.c.billing_project == project, batches.c.deleted.is_(False),
            batches.c.closed.is_(True), batches.c.time_completed.is_(None),
        ).order_by(batches.c.id)
    )
    return [r.id for r in rows]


async def uncancelled_running_batches(conn: AsyncConnection, projects: list[str]) -> list[int]:
    """Batches a spend limit must cancel: those of the projects still running and not yet cancelled."""
    if not projects:
        return []
    rows = await conn.execute(
        select(batches.c.id).where(
            batches.c.billing_project.in_(projects), batches.c.closed.is_(True),
            batches.c.time_completed.is_(None), batches.c.cancelled.is_(False),
        ).order_by(batches.c.id)
    )
    return [r.id for r in rows]


async def set_batches_cancelled(conn: AsyncConnection, batch_ids: list[int]) -> None:
    """Flag batches cancelled (the driver then cancels their jobs; always_run jobs still run)."""
    if batch_ids:
        await conn.execute(
            update(batches).where(batches.c.id.in_(batch_ids), batches.c.cancelled.is_(False))
            .values(cancelled=True)
        )
