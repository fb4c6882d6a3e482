"""Named queries behind `corral pool|instance|user list`: collections with their health, instances with
their host, heartbeat and running attempts; and the writes that record collection and instance health."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.store.tables import attempts, instance_collections, instances, jobs, users

LIVE_STATES = ("pending", "active")


@dataclass(frozen=True, slots=True)
class CollectionRecord:
    name: str
    kind: str
    provider: str
    config: dict[str, Any]
    health: str
    last_error: str | None
    time_last_error: float | None
    n_failures: int


@dataclass(frozen=True, slots=True)
class InstanceRow:
    name: str
    collection: str
    state: str
    cores_mcpu: int
    memory_bytes: int
    gpus: int
    gpu_type: str | None
    metadata: dict[str, Any]
    reserved_for: str | None
    time_created: float
    time_activated: float | None
    last_heartbeat: float | None
    time_deleted: float | None
    host_name: str | None
    end_reason: str | None


_INSTANCE_COLUMNS = [instances.c[name] for name in InstanceRow.__slots__]  # type: ignore[attr-defined]


async def list_collections(conn: AsyncConnection) -> list[CollectionRecord]:
    rows = await conn.execute(
        select(
            instance_collections.c.name, instance_collections.c.kind, instance_collections.c.provider,
            instance_collections.c.config, instance_collections.c.health, instance_collections.c.last_error,
            instance_collections.c.time_last_error, instance_collections.c.n_failures,
        ).order_by(instance_collections.c.name)
    )
    return [CollectionRecord(*row) for row in rows]


async def list_instances(
    conn: AsyncConnection, *, collection: str | None = None, ended: int = 0
) -> list[InstanceRow]:
    """Live instances (pending, active), plus the `ended` most recently ended ones (newest first)."""
    query = select(*_INSTANCE_COLUMNS).where(instances.c.state.in_(LIVE_STATES))
    if collection is not None:
        query = query.where(instances.c.collection == collection)
    found = [InstanceRow(*row) for row in await conn.execute(query.order_by(instances.c.name))]
    if ended > 0:
        gone = select(*_INSTANCE_COLUMNS).where(instances.c.state.not_in(LIVE_STATES))
        if collection is not None:
            gone = gone.where(instances.c.collection == collection)
        gone = gone.order_by(instances.c.time_created.desc()).limit(ended)
        found += [InstanceRow(*row) for row in await conn.execute(gone)]
    return found


async def get_instance(conn: AsyncConnection, name: str) -> InstanceRow | None:
    row = (await conn.execute(select(*_INSTANCE_COLUMNS).where(instances.c.name == name))).first()
    return InstanceRow(*row) if row is not None else None


@dataclass(frozen=True, slots=True)
class RunningAttempt:
    batch_id: int
    job_id: int
    attempt_id: int
    instance_name: str
    user: str
    cores_mcpu: int
    time_assigned: float


async def running_attempts(conn: AsyncConnection, instance_names: Sequence[str]) -> list[RunningAttempt]:
    if not instance_names:
        return []
    rows = await conn.execute(
        select(
            attempts.c.batch_id, attempts.c.job_id, attempts.c.attempt_id, attempts.c.instance_name,
            jobs.c.user, attempts.c.cores_mcpu, attempts.c.time_assigned,
        )
        .join(jobs, (jobs.c.batch_id == attempts.c.batch_id) & (jobs.c.job_id == attempts.c.job_id))
        .where(attempts.c.state == "running", attempts.c.instance_name.in_(list(instance_names)))
        .order_by(attempts.c.batch_id, attempts.c.job_id)
    )
    return [RunningAttempt(*row) for row in rows]


async def instance_hosts(conn: AsyncConnection, names: Sequence[str]) -> dict[str, str]:
    """Host name (or the provider's host / address) of each named instance that has one."""
    if not names:
        return {}
    rows = await conn.execute(
        select(instances.c.name, instances.c.host_name, instances.c.metadata)
        .where(instances.c.name.in_(sorted(set(names))))
    )
    found: dict[str, str] = {}
    for name, host, meta in rows:
        where = host or (meta or {}).get("host") or (meta or {}).get("address")
        if where:
            found[name] = str(where)
    return found


async def ready_jobs_by_pool(conn: AsyncConnection) -> dict[str, int]:
    rows = await conn.execute(
        select(jobs.c.pool, func.count()).where(jobs.c.state == "Ready").group_by(jobs.c.pool)
    )
    return {str(pool): int(n) for pool, n in rows}


async def list_users(conn: AsyncConnection) -> list[dict[str, Any]]:
    rows = await conn.execute(select(users.c.name, users.c.is_admin).order_by(users.c.name))
    return [{"name": name, "is_admin": bool(is_admin)} for name, is_admin in rows]


# ---- writes (the autoscaler and the worker edge record what they learn)


async def set_collection_health(
    conn: AsyncConnection, name: str, *, health: str, last_error: str | None, time_last_error: float | None,
    n_failures: int,
) -> None:
    await conn.execute(
        update(instance_collections)
        .where(instance_collections.c.name == name)
        .values(health=health, last_error=last_error, time_last_error=time_last_error, n_failures=n_failures)
    )


async def set_instance_host(conn: AsyncConnection, name: str, host_name: str) -> None:
    await conn.execute(update(instances).where(instances.c.name == name).values(host_name=host_name))


async def set_instance_end_reason(conn: AsyncConnection, name: str, reason: str) -> None:
    await conn.execute(
        update(instances).where(instances.c.name == name, instances.c.end_reason.is_(None))
        .values(end_reason=reason[:2000])
    )
