"""Named queries of batch counters and state: add what a tick's completions changed, recompute the state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.domain.batches import BatchCounts, CountDelta, batch_state, reaches_failure_limit
from corral.store.driver_records import CascadeResult
from corral.store.tables import batches

# Built once: every tick with a completion runs them.
_ADD_COUNTS = (
    update(batches)
    .where(batches.c.id == bindparam("b"))
    .values(
        n_completed=batches.c.n_completed + bindparam("dc"),
        n_succeeded=batches.c.n_succeeded + bindparam("ds"),
        n_failed=batches.c.n_failed + bindparam("df"),
        n_cancelled=batches.c.n_cancelled + bindparam("dx"),
        msec_mcpu=batches.c.msec_mcpu + bindparam("ms"),
        cost=batches.c.cost + bindparam("c"),
    )
)
# One batch (the usual tick): its new counters come back from the UPDATE, no SELECT after it.
_ADD_COUNTS_RETURNING = _ADD_COUNTS.returning(*batches.c)
_BATCHES = select(batches).where(batches.c.id.in_(bindparam("ids", expanding=True)))
_SET_STATE = (
    update(batches)
    .where(batches.c.id == bindparam("b"))
    .values(state=bindparam("s"), time_completed=bindparam("t"), cancelled=bindparam("x"))
)


async def apply_batch_deltas(
    conn: AsyncConnection,
    deltas: dict[int, CountDelta],
    usage: dict[int, tuple[int, float]],
    now: float,
    result: CascadeResult,
) -> None:
    touched = sorted(set(deltas) | set(usage))
    if not touched:
        return
    params = [
        {"b": b, "dc": deltas[b].n_completed, "ds": deltas[b].n_succeeded, "df": deltas[b].n_failed,
         "dx": deltas[b].n_cancelled, "ms": usage.get(b, (0, 0.0))[0], "c": usage.get(b, (0, 0.0))[1]}
        for b in touched
    ]
    if len(params) == 1:
        rows = list(await conn.execute(_ADD_COUNTS_RETURNING, params[0]))
        await _save_states(conn, rows, now, result)
        return
    await conn.execute(_ADD_COUNTS, params)
    await refresh_batch_states(conn, touched, now, result)


async def refresh_batch_states(
    conn: AsyncConnection, batch_ids: Sequence[int], now: float, result: CascadeResult | None = None
) -> None:
    """Recompute state (and completion time) of batches from their counters; note auto-cancels."""
    rows = list(await conn.execute(_BATCHES, {"ids": list(batch_ids)}))
    await _save_states(conn, rows, now, result)


async def _save_states(
    conn: AsyncConnection, rows: Sequence[Any], now: float, result: CascadeResult | None
) -> None:
    """The state of batches (rows of the batches table as they are now), where it changed."""
    changes = []
    for row in rows:
        counts = BatchCounts(row.n_jobs, row.n_completed, row.n_succeeded, row.n_failed, row.n_cancelled)
        auto_cancel = reaches_failure_limit(
            counts, cancel_after_n_failures=row.cancel_after_n_failures, cancelled=bool(row.cancelled)
        )
        cancelled = bool(row.cancelled) or auto_cancel
        state = batch_state(counts, closed=bool(row.closed), cancelled=cancelled)
        complete = bool(row.closed) and counts.complete
        time_completed = row.time_completed or (now if complete else None)
        if state != row.state or time_completed != row.time_completed or auto_cancel:
            changes.append({"b": row.id, "s": state, "t": time_completed, "x": cancelled})
        if result is not None:
            if auto_cancel:
                result.batches_to_cancel.append(row.id)
            if complete and row.time_completed is None:
                result.completed_batches.append(row.id)
    if changes:
        await conn.execute(_SET_STATE, changes)
