"""Named read queries the web pages need beyond the API's: state counts, timelines, DAG edges, pools.

Each page issues a few small, indexed queries; nothing here reads a whole large batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.domain.states import JobState
from corral.store.tables import attempts, batch_updates, instance_collections, instances, job_parents, jobs

DAG_MAX_JOBS = 300  # a batch with more jobs shows no DAG: a graph that size is unreadable anyway


async def state_counts(conn: AsyncConnection, batch_id: int) -> dict[str, int]:
    """Committed jobs per state (an index-only scan of (batch_id, state, job_id))."""
    rows = await conn.execute(
        select(jobs.c.state, func.count().label("n"))
        .select_from(
            jobs.join(
                batch_updates,
                and_(
                    batch_updates.c.batch_id == jobs.c.batch_id, batch_updates.c.update_id == jobs.c.update_id
                ),
            )
        )
        .where(jobs.c.batch_id == batch_id, batch_updates.c.committed.is_(True))
        .group_by(jobs.c.state)
    )
    counts = {state.value: 0 for state in JobState}
    for row in rows:
        counts[str(row.state)] = int(row.n)
    return counts


@dataclass(frozen=True, slots=True)
class TimelineBar:
    job_id: int
    attempt_id: int
    name: str | None
    state: str  # the job's state
    start: float
    end: float | None  # None: still running


async def timeline(
    conn: AsyncConnection, batch_id: int, *, after_job_id: int | None, limit: int
) -> list[TimelineBar]:
    """Attempts of the page's jobs (job id order), start to end."""
    low = after_job_id or 0
    rows = await conn.execute(
        select(
            attempts.c.job_id,
            attempts.c.attempt_id,
            attempts.c.time_assigned,
            attempts.c.time_started,
            attempts.c.time_ended,
            jobs.c.name,
            jobs.c.state,
        )
        .join(jobs, and_(jobs.c.batch_id == attempts.c.batch_id, jobs.c.job_id == attempts.c.job_id))
        .where(attempts.c.batch_id == batch_id, attempts.c.job_id > low, attempts.c.job_id <= low + limit)
        .order_by(attempts.c.job_id, attempts.c.attempt_id)
    )
    return [
        TimelineBar(
            int(r.job_id),
            int(r.attempt_id),
            r.name,
            str(r.state),
            float(r.time_started if r.time_started is not None else r.time_assigned),
            float(r.time_ended) if r.time_ended is not None else None,
        )
        for r in rows
    ]


@dataclass(frozen=True, slots=True)
class DagNode:
    job_id: int
    name: str | None
    state: str
    parents: list[int]


async def dag(conn: AsyncConnection, batch_id: int, n_jobs: int) -> list[DagNode] | None:
    """Every job and its parents, for batches of at most DAG_MAX_JOBS jobs (None for larger ones)."""
    if n_jobs > DAG_MAX_JOBS:
        return None
    parents: dict[int, list[int]] = {}
    for row in await conn.execute(
        select(job_parents.c.job_id, job_parents.c.parent_id).where(job_parents.c.batch_id == batch_id)
    ):
        parents.setdefault(int(row.job_id), []).append(int(row.parent_id))
    rows = await conn.execute(
        select(jobs.c.job_id, jobs.c.name, jobs.c.state)
        .where(jobs.c.batch_id == batch_id)
        .order_by(jobs.c.job_id)
        .limit(DAG_MAX_JOBS + 1)
    )
    return [
        DagNode(int(r.job_id), r.name, str(r.state), sorted(parents.get(int(r.job_id), []))) for r in rows
    ]


# ---------------------------------------------------------------- pools (admin)


@dataclass(frozen=True, slots=True)
class CollectionView:
    name: str
    kind: str
    provider: str
    config: dict[str, Any]


@dataclass(frozen=True, slots=True)
class InstanceView:
    name: str
    collection: str
    state: str
    cores_mcpu: int
    memory_bytes: int
    gpus: int
    gpu_type: str | None
    metadata: dict[str, Any]
    time_created: float
    time_activated: float | None
    last_heartbeat: float | None
    used_mcpu: int  # cores of running attempts on it
    used_gpus: int


@dataclass(frozen=True, slots=True)
class UserCores:
    pool: str
    user: str
    ready_jobs: int
    ready_mcpu: int
    running_jobs: int
    running_mcpu: int


async def collections(conn: AsyncConnection) -> list[CollectionView]:
    rows = await conn.execute(select(instance_collections).order_by(instance_collections.c.name))
    return [CollectionView(r.name, r.kind, r.provider, dict(r.config or {})) for r in rows]


def _used_by_instance() -> Any:
    """Cores and GPUs held by running attempts, per instance."""
    return (
        select(
            attempts.c.instance_name,
            func.sum(attempts.c.cores_mcpu).label("mcpu"),
            func.sum(jobs.c.gpus).label("used_gpus"),
        )
        .join(jobs, and_(jobs.c.batch_id == attempts.c.batch_id, jobs.c.job_id == attempts.c.job_id))
        .where(attempts.c.state == "running")
        .group_by(attempts.c.instance_name)
        .subquery()
    )


async def instances_view(
    conn: AsyncConnection, *, include_deleted: bool, limit: int, before: tuple[float, str] | None = None
) -> list[InstanceView]:
    """A page of instances, newest first (keyset: strictly older than `before` = (time_created, name)),
    with the cores and GPUs their running attempts hold."""
    used = _used_by_instance()
    query = (
        select(instances, used.c.mcpu, used.c.used_gpus)
        .outerjoin(used, used.c.instance_name == instances.c.name)
        .order_by(instances.c.time_created.desc(), instances.c.name.desc())
        .limit(limit)
    )
    if not include_deleted:
        query = query.where(instances.c.state != "deleted")
    if before is not None:
        t, name = before
        query = query.where(
            or_(instances.c.time_created < t, and_(instances.c.time_created == t, instances.c.name < name))
        )
    return [
        InstanceView(
            r.name,
            r.collection,
            r.state,
            int(r.cores_mcpu),
            int(r.memory_bytes),
            int(r.gpus or 0),
            r.gpu_type,
            dict(r.metadata or {}),
            float(r.time_created),
            r.time_activated,
            r.last_heartbeat,
            int(r.mcpu or 0),
            int(r.used_gpus or 0),
        )
        for r in await conn.execute(query)
    ]


@dataclass(frozen=True, slots=True)
class Capacity:
    total_mcpu: int
    free_mcpu: int
    total_gpus: int
    free_gpus: int


async def collection_capacity(conn: AsyncConnection) -> dict[str, Capacity]:
    """Per collection: total and free cores and GPUs of its active instances."""
    used = _used_by_instance()
    rows = await conn.execute(
        select(
            instances.c.collection,
            func.sum(instances.c.cores_mcpu).label("total_mcpu"),
            func.sum(func.coalesce(used.c.mcpu, 0)).label("used_mcpu"),
            func.sum(instances.c.gpus).label("total_gpus"),
            func.sum(func.coalesce(used.c.used_gpus, 0)).label("used_gpus"),
        )
        .outerjoin(used, used.c.instance_name == instances.c.name)
        .where(instances.c.state == "active")
        .group_by(instances.c.collection)
    )
    return {
        str(r.collection): Capacity(
            int(r.total_mcpu or 0),
            max(0, int(r.total_mcpu or 0) - int(r.used_mcpu or 0)),
            int(r.total_gpus or 0),
            max(0, int(r.total_gpus or 0) - int(r.used_gpus or 0)),
        )
        for r in rows
    }


async def instance_counts(conn: AsyncConnection) -> dict[tuple[str, str], int]:
    """(collection, state) -> number of instances, deleted ones included."""
    rows = await conn.execute(
        select(instances.c.collection, instances.c.state, func.count().label("n")).group_by(
            instances.c.collection, instances.c.state
        )
    )
    return {(str(r.collection), str(r.state)): int(r.n) for r in rows}


async def user_cores(conn: AsyncConnection) -> list[UserCores]:
    """Per pool and user: ready and running jobs and their cores (the fair-share view)."""
    live = [JobState.READY.value, JobState.RUNNING.value]
    rows = await conn.execute(
        select(
            jobs.c.pool,
            jobs.c.user,
            jobs.c.state,
            func.count().label("n"),
            func.sum(jobs.c.cores_mcpu).label("mcpu"),
        )
        .where(jobs.c.state.in_(live))
        .group_by(jobs.c.pool, jobs.c.user, jobs.c.state)
    )
    found: dict[tuple[str, str], list[int]] = {}
    for r in rows:
        entry = found.setdefault((str(r.pool), str(r.user)), [0, 0, 0, 0])
        offset = 0 if r.state == JobState.READY.value else 2
        entry[offset] += int(r.n)
        entry[offset + 1] += int(r.mcpu or 0)
    return [UserCores(pool, user, *values) for (pool, user), values in sorted(found.items())]
