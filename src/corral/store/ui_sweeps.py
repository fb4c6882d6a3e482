"""The sweeps pages' queries. Sweeps have no table: a sweep is the batches tagged `sweep=<name>` (with
`sweep_version` and `sweep_storage`) and their jobs named `chunk-<index>-<key>` (corral.sweeps.submit)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import case, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.store.batches import _BATCH_COLUMNS, BatchRecord, _batch
from corral.store.tables import batches, billing_project_users, jobs

SWEEP = batches.c.attributes["sweep"].as_string()
CHUNK_PREFIX = "chunk-"


def _visible(query: Any, viewer: str | None) -> Any:
    """Not deleted, and (viewer None: every batch, for admins) the viewer's own or their billing
    projects' batches: the batches list's rule."""
    query = query.where(batches.c.deleted.is_(False))
    if viewer is None:
        return query
    member_of = select(billing_project_users.c.billing_project).where(billing_project_users.c.user == viewer)
    return query.where(or_(batches.c.user == viewer, batches.c.billing_project.in_(member_of)))


@dataclass(frozen=True, slots=True)
class SweepSummary:
    name: str
    n_batches: int
    newest_batch_id: int
    first_created: float
    last_created: float
    n_jobs: int
    n_completed: int
    n_succeeded: int
    n_failed: int
    n_cancelled: int
    n_incomplete_batches: int
    users: str  # "alice" or "alice, bob"


async def sweep_summaries(
    conn: AsyncConnection, viewer: str | None, *, limit: int = 500
) -> list[SweepSummary]:
    """One line per sweep name the viewer can see, newest activity first (one grouped query)."""
    query = _visible(
        select(
            SWEEP.label("name"),
            func.count().label("n_batches"),
            func.max(batches.c.id).label("newest"),
            func.min(batches.c.time_created).label("first"),
            func.max(batches.c.time_created).label("last"),
            func.sum(batches.c.n_jobs).label("n_jobs"),
            func.sum(batches.c.n_completed).label("n_completed"),
            func.sum(batches.c.n_succeeded).label("n_succeeded"),
            func.sum(batches.c.n_failed).label("n_failed"),
            func.sum(batches.c.n_cancelled).label("n_cancelled"),
            func.sum(case((batches.c.time_completed.is_(None), 1), else_=0)).label("n_open"),
            func.min(batches.c.user).label("user_a"),
            func.max(batches.c.user).label("user_b"),
        ).where(SWEEP.is_not(None)),
        viewer,
    )
    query = query.group_by(SWEEP).order_by(func.max(batches.c.id).desc()).limit(limit)
    return [
        SweepSummary(
            str(r.name), int(r.n_batches), int(r.newest), float(r.first), float(r.last), int(r.n_jobs or 0),
            int(r.n_completed or 0), int(r.n_succeeded or 0), int(r.n_failed or 0), int(r.n_cancelled or 0),
            int(r.n_open or 0), r.user_a if r.user_a == r.user_b else f"{r.user_a}, {r.user_b}, …",
        )
        for r in await conn.execute(query)
    ]


async def sweep_batches(conn: AsyncConnection, name: str, viewer: str | None) -> list[BatchRecord]:
    """The sweep's batches the viewer can see, newest first (what `sweep_batches` of the library lists)."""
    named = batches.c.attributes["sweep"].as_string() == name
    query = _visible(select(*_BATCH_COLUMNS).where(named), viewer).order_by(batches.c.id.desc())
    return [_batch(r) for r in await conn.execute(query)]


@dataclass(frozen=True, slots=True)
class ChunkJobRow:
    batch_id: int
    job_id: int
    name: str
    state: str
    exit_code: int | None
    n_attempts: int


async def chunk_jobs(conn: AsyncConnection, batch_ids: Sequence[int]) -> list[ChunkJobRow]:
    """Every chunk job of the batches, newest batch first, then by job id."""
    if not batch_ids:
        return []
    query = (
        select(jobs.c.batch_id, jobs.c.job_id, jobs.c.name, jobs.c.state, jobs.c.exit_code, jobs.c.n_attempts)
        .where(jobs.c.batch_id.in_(list(batch_ids)), jobs.c.name.like(f"{CHUNK_PREFIX}%"))
        .order_by(jobs.c.batch_id.desc(), jobs.c.job_id)
    )
    return [
        ChunkJobRow(int(r.batch_id), int(r.job_id), str(r.name), str(r.state), r.exit_code, int(r.n_attempts))
        for r in await conn.execute(query)
    ]
