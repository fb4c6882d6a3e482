"""Named queries of benchmark sessions and their results (by session, cell, metric)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, insert, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.store.tables import bench_results, bench_sessions


@dataclass(frozen=True)
class SessionRecord:
    id: int
    name: str
    user: str
    batch_id: int | None
    recipe: dict[str, Any]
    recipe_hash: str
    state: str
    manifest: dict[str, Any] | None
    time_created: float
    time_completed: float | None

    def to_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "user": self.user,
            "batch_id": self.batch_id,
            "recipe": self.recipe,
            "recipe_hash": self.recipe_hash,
            "state": self.state,
            "manifest": self.manifest,
            "time_created": self.time_created,
            "time_completed": self.time_completed,
        }


_COLUMNS = [bench_sessions.c[f] for f in SessionRecord.__dataclass_fields__]


async def create_session(
    conn: AsyncConnection,
    *,
    name: str,
    user: str,
    batch_id: int | None,
    recipe: dict[str, Any],
    recipe_hash: str,
    manifest: dict[str, Any] | None,
    now: float,
) -> int:
    result = await conn.execute(
        insert(bench_sessions).values(
            name=name,
            user=user,
            batch_id=batch_id,
            recipe=recipe,
            recipe_hash=recipe_hash,
            state="running",
            manifest=manifest,
            time_created=now,
        )
    )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


async def find_session(
    conn: AsyncConnection, user: str, ref: str, *, admin: bool = False
) -> SessionRecord | None:
    """By id, or the newest session of that name, among the user's (every user's for an admin)."""
    query = select(*_COLUMNS)
    if not admin:
        query = query.where(bench_sessions.c.user == user)
    if ref.isdigit():
        query = query.where(or_(bench_sessions.c.id == int(ref), bench_sessions.c.name == ref))
    else:
        query = query.where(bench_sessions.c.name == ref)
    row = (await conn.execute(query.order_by(bench_sessions.c.id.desc()).limit(1))).first()
    return SessionRecord(*row) if row is not None else None


async def list_sessions(
    conn: AsyncConnection, user: str, *, admin: bool = False, limit: int = 50
) -> list[SessionRecord]:
    query = select(*_COLUMNS).order_by(bench_sessions.c.id.desc()).limit(limit)
    if not admin:
        query = query.where(bench_sessions.c.user == user)
    return [SessionRecord(*row) for row in await conn.execute(query)]


async def save_results(
    conn: AsyncConnection,
    session_id: int,
    rows: Sequence[dict[str, Any]],
    *,
    state: str,
    manifest: dict[str, Any] | None,
    now: float | None,
) -> None:
    """Replace the session's results (idempotent: results are recomputed from the batch's logs)."""
    await conn.execute(delete(bench_results).where(bench_results.c.session_id == session_id))
    if rows:
        await conn.execute(
            insert(bench_results),
            [
                {
                    "session_id": session_id,
                    "cell": r["cell"],
                    "repetition": r["repetition"],
                    "client": r["client"],
                    "metric": r["metric"],
                    "value": r["value"],
                    "unit": r["unit"],
                    "params": r["params"],
                }
                for r in rows
            ],
        )
    values: dict[str, Any] = {"state": state, "time_completed": now}
    if manifest is not None:
        values["manifest"] = manifest
    await conn.execute(update(bench_sessions).where(bench_sessions.c.id == session_id).values(**values))


async def set_state(conn: AsyncConnection, session_id: int, state: str, now: float | None) -> None:
    await conn.execute(
        update(bench_sessions)
        .where(bench_sessions.c.id == session_id)
        .values(state=state, time_completed=now)
    )


async def query_results(
    conn: AsyncConnection, session_id: int, *, cell: str | None = None, metric: str | None = None
) -> list[dict[str, Any]]:
    query = select(bench_results).where(bench_results.c.session_id == session_id)
    if cell is not None:
        query = query.where(bench_results.c.cell == cell)
    if metric is not None:
        query = query.where(bench_results.c.metric == metric)
    query = query.order_by(
        bench_results.c.cell, bench_results.c.client, bench_results.c.metric, bench_results.c.repetition
    )
    return [dict(row._mapping) for row in await conn.execute(query)]
