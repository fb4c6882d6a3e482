"""Resource usage series of attempts: written by the driver from worker reports, read by the job page."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.store.tables import job_usage

MAX_POINTS = 1000  # a series longer than this is thinned evenly when read


@dataclass(frozen=True, slots=True)
class UsageSample:
    batch_id: int
    job_id: int
    attempt_id: int
    time: float
    cpu_mcpu: int
    memory_bytes: int


async def insert_samples(conn: AsyncConnection, samples: Sequence[UsageSample]) -> None:
    """Duplicates (a report sent twice) are dropped by key before inserting."""
    if not samples:
        return
    unique = {(s.batch_id, s.job_id, s.attempt_id, s.time): s for s in samples}
    keys = {(s.batch_id, s.job_id, s.attempt_id) for s in unique.values()}
    existing: set[tuple[int, int, int, float]] = set()
    for batch_id, job_id, attempt_id in keys:
        times = [k[3] for k in unique if k[:3] == (batch_id, job_id, attempt_id)]
        rows = await conn.execute(
            select(job_usage.c.time).where(
                job_usage.c.batch_id == batch_id,
                job_usage.c.job_id == job_id,
                job_usage.c.attempt_id == attempt_id,
                job_usage.c.time.in_(times),
            )
        )
        existing.update((batch_id, job_id, attempt_id, float(r.time)) for r in rows)
    fresh = [s for k, s in unique.items() if k not in existing]
    if fresh:
        await conn.execute(
            job_usage.insert(),
            [
                {
                    "batch_id": s.batch_id,
                    "job_id": s.job_id,
                    "attempt_id": s.attempt_id,
                    "time": s.time,
                    "cpu_mcpu": s.cpu_mcpu,
                    "memory_bytes": s.memory_bytes,
                }
                for s in fresh
            ],
        )


async def attempt_series(
    conn: AsyncConnection, batch_id: int, job_id: int, attempt_id: int, *, max_points: int = MAX_POINTS
) -> list[UsageSample]:
    rows = list(
        await conn.execute(
            select(job_usage)
            .where(
                job_usage.c.batch_id == batch_id,
                job_usage.c.job_id == job_id,
                job_usage.c.attempt_id == attempt_id,
            )
            .order_by(job_usage.c.time)
        )
    )
    if len(rows) > max_points:
        step = len(rows) / max_points
        rows = [rows[int(i * step)] for i in range(max_points)]
    return [
        UsageSample(
            int(r.batch_id),
            int(r.job_id),
            int(r.attempt_id),
            float(r.time),
            int(r.cpu_mcpu),
            int(r.memory_bytes),
        )
        for r in rows
    ]
