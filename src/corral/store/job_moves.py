"""The one way a job's state changes in the store: `move_jobs`, whose WHERE clause comes from the
domain's transition table (a move from any other state changes nothing, and the caller sees the count).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from sqlalchemy import bindparam, literal_column, update
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.domain.states import JobState, legal_sources
from corral.store.tables import jobs

JobKey = tuple[int, int]
CHUNK = 2000


def state_in(column: Any, states: Iterable[JobState]) -> Any:
    """`column IN ('A', 'B')` with inlined constants: expanding parameters cannot be used in executemany."""
    return column.in_([literal_column(f"'{JobState(state).value}'") for state in sorted(states)])


def chunks(keys: Iterable[JobKey]) -> Iterable[tuple[int, list[int]]]:
    """Group job keys by batch and cut them into IN-lists of bounded size."""
    by_batch: dict[int, list[int]] = defaultdict(list)
    for batch_id, job_id in keys:
        by_batch[batch_id].append(job_id)
    for batch_id, ids in by_batch.items():
        for i in range(0, len(ids), CHUNK):
            yield batch_id, ids[i : i + CHUNK]


class JobMove:
    """A `move_jobs` statement by key (executemany over "b"/"j" rows), built once.

    Hot paths (the driver's tick) keep one at module level: SQLAlchemy then neither builds the statement
    nor computes its cache key again on every execution (about half a statement's CPU on SQLite).
    """

    def __init__(
        self,
        to: JobState,
        *,
        only_from: Iterable[JobState] | None = None,
        where: Sequence[Any] = (),
        values: Mapping[str, Any] | None = None,
    ) -> None:
        sources = legal_sources(to, frozenset(only_from) if only_from is not None else None)
        self.to = to
        self.statement = (
            update(jobs).where(state_in(jobs.c.state, sources), *where).values(state=to, **(values or {}))
            .where(jobs.c.batch_id == bindparam("b"), jobs.c.job_id == bindparam("j"))
        )

    async def run(self, conn: AsyncConnection, keys: Sequence[Mapping[str, Any]]) -> int | None:
        """How many moved (None when the database driver cannot count an executemany's rows, as asyncpg)."""
        if not keys:
            return 0
        rowcount = (await conn.execute(self.statement, list(keys))).rowcount
        return None if rowcount is None or rowcount < 0 else int(rowcount)


async def move_jobs(
    conn: AsyncConnection,
    to: JobState,
    keys: Sequence[Mapping[str, Any]] | None = None,
    *,
    only_from: Iterable[JobState] | None = None,
    where: Sequence[Any] = (),
    values: Mapping[str, Any] | None = None,
) -> int | None:
    """Move jobs to `to` from the states the table allows (narrowed to `only_from`); returns how many moved
    (None when the database driver cannot count the rows of an executemany, as asyncpg).

    `keys`: one parameter row per job with "b" (batch) and "j" (job), plus the bind parameters `values`
    uses (executemany); without keys, the jobs are those `where` selects (one statement).
    """
    if keys is not None:
        move = JobMove(to, only_from=only_from, where=where, values=values)
        return await move.run(conn, keys)
    if not where:
        raise ValueError("move_jobs without keys needs a where clause")
    sources = legal_sources(to, frozenset(only_from) if only_from is not None else None)
    stmt = update(jobs).where(state_in(jobs.c.state, sources), *where).values(state=to, **(values or {}))
    return int((await conn.execute(stmt)).rowcount or 0)
