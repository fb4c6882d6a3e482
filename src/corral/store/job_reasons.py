"""Named queries behind the reasons shown for ended jobs: which parent made a job be cancelled."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.domain.reasons import FailedParent
from corral.domain.states import JobState
from corral.store.tables import job_parents, jobs

CHUNK = 500


async def failed_parents(
    conn: AsyncConnection, batch_id: int, job_ids: Sequence[int]
) -> dict[int, FailedParent]:
    """For each of `job_ids`, its first parent (by id) that is complete but did not succeed."""
    parent = jobs.alias("parent")
    found: dict[int, FailedParent] = {}
    for i in range(0, len(job_ids), CHUNK):
        ids = list(job_ids[i : i + CHUNK])
        rows = await conn.execute(
            select(job_parents.c.job_id, parent.c.job_id.label("parent_id"), parent.c.state, parent.c.name)
            .join(parent, and_(parent.c.batch_id == job_parents.c.batch_id,
                               parent.c.job_id == job_parents.c.parent_id))
            .where(job_parents.c.batch_id == batch_id, job_parents.c.job_id.in_(ids))
            .where(parent.c.state.in_([JobState.FAILED, JobState.ERROR, JobState.CANCELLED]))
            .order_by(job_parents.c.job_id, parent.c.job_id)
        )
        for row in rows:
            known = found.get(row.job_id)
            # A parent that failed says more than one cancelled because of its own parent.
            if known is None or (known.state == JobState.CANCELLED and row.state != JobState.CANCELLED):
                found[row.job_id] = FailedParent(row.parent_id, row.state, row.name)
    return found


async def job_timeouts(conn: AsyncConnection, batch_id: int, job_ids: Sequence[int]) -> dict[int, float]:
    """The timeout (seconds) in the spec of each of `job_ids` that has one."""
    found: dict[int, float] = {}
    for i in range(0, len(job_ids), CHUNK):
        rows = await conn.execute(
            select(jobs.c.job_id, jobs.c.spec)
            .where(jobs.c.batch_id == batch_id, jobs.c.job_id.in_(list(job_ids[i : i + CHUNK])))
        )
        for row in rows:
            timeout = (row.spec or {}).get("timeout")
            if isinstance(timeout, int | float):
                found[row.job_id] = float(timeout)
    return found


async def jobs_to_rerun(
    conn: AsyncConnection, batch_id: int, states: Sequence[str]
) -> list[tuple[JobRecordSpec, list[int]]]:
    """Jobs of the batch in `states` (ascending id), each with its stored spec and its parents' ids."""
    rows = list(await conn.execute(
        select(
            jobs.c.job_id, jobs.c.name, jobs.c.pool, jobs.c.cores_mcpu, jobs.c.memory_bytes,
            jobs.c.storage_bytes, jobs.c.gpus, jobs.c.gpu_type, jobs.c.always_run, jobs.c.n_max_attempts,
            jobs.c.spec, jobs.c.attributes,
        )
        .where(jobs.c.batch_id == batch_id, jobs.c.state.in_(list(states)))
        .order_by(jobs.c.job_id)
    ))
    parents: dict[int, list[int]] = {}
    ids = [row.job_id for row in rows]
    for i in range(0, len(ids), CHUNK):
        found = await conn.execute(
            select(job_parents.c.job_id, job_parents.c.parent_id)
            .where(job_parents.c.batch_id == batch_id, job_parents.c.job_id.in_(ids[i : i + CHUNK]))
        )
        for job_id, parent_id in found:
            parents.setdefault(job_id, []).append(parent_id)
    return [(JobRecordSpec(**row._mapping), sorted(parents.get(row.job_id, []))) for row in rows]


@dataclass(frozen=True, slots=True)
class JobRecordSpec:
    """What it takes to submit a stored job again."""

    job_id: int
    name: str | None
    pool: str
    cores_mcpu: int
    memory_bytes: int
    storage_bytes: int
    gpus: int
    gpu_type: str | None
    always_run: bool
    n_max_attempts: int
    spec: dict[str, Any]
    attributes: dict[str, str]
