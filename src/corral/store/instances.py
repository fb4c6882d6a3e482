"""Named queries for instances and instance collections."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.domain.capacity import SiteCollection, collection_capacity
from corral.store.tables import instance_collections, instances

LIVE_STATES = ("pending", "active")


@dataclass(frozen=True, slots=True)
class InstanceRecord:
    name: str
    collection: str
    state: str
    cores_mcpu: int
    memory_bytes: int
    token_hash: str
    metadata: dict[str, Any]
    last_heartbeat: float | None
    gpus: int = 0
    gpu_type: str | None = None
    reserved_for: str | None = None  # "batch_id.job_id" of a job-private instance


async def ensure_collection(
    conn: AsyncConnection, name: str, *, kind: str, provider: str, config: dict[str, Any]
) -> None:
    found = await conn.execute(select(instance_collections.c.name).where(instance_collections.c.name == name))
    if found.first() is None:
        await conn.execute(
            instance_collections.insert().values(name=name, kind=kind, provider=provider, config=config)
        )
    else:
        await conn.execute(
            update(instance_collections)
            .where(instance_collections.c.name == name)
            .values(kind=kind, provider=provider, config=config)
        )


async def site_collections(conn: AsyncConnection) -> dict[str, SiteCollection]:
    """Every collection the site has declared, with the largest instance it can bring up."""
    rows = await conn.execute(
        select(instance_collections.c.name, instance_collections.c.kind, instance_collections.c.config)
    )
    return {row.name: collection_capacity(row.name, row.kind, row.config or {}) for row in rows}


async def create_instance(
    conn: AsyncConnection,
    *,
    name: str,
    collection: str,
    cores_mcpu: int,
    memory_bytes: int,
    token_hash: str,
    metadata: dict[str, Any],
    now: float,
    gpus: int = 0,
    gpu_type: str | None = None,
    reserved_for: str | None = None,
) -> None:
    await conn.execute(
        instances.insert().values(
            name=name, collection=collection, state="pending", cores_mcpu=cores_mcpu,
            memory_bytes=memory_bytes, token_hash=token_hash, metadata=metadata, time_created=now,
            gpus=gpus, gpu_type=gpu_type, reserved_for=reserved_for,
        )
    )


async def live_instances(conn: AsyncConnection, collection: str | None = None) -> list[InstanceRecord]:
    query = select(
        instances.c.name, instances.c.collection, instances.c.state, instances.c.cores_mcpu,
        instances.c.memory_bytes, instances.c.token_hash, instances.c.metadata, instances.c.last_heartbeat,
        instances.c.gpus, instances.c.gpu_type, instances.c.reserved_for,
    ).where(instances.c.state.in_(LIVE_STATES))
    if collection is not None:
        query = query.where(instances.c.collection == collection)
    return [InstanceRecord(*row) for row in await conn.execute(query.order_by(instances.c.name))]


async def activate_instance(
    conn: AsyncConnection, name: str, cores_mcpu: int, memory_bytes: int, now: float
) -> None:
    await conn.execute(
        update(instances)
        .where(instances.c.name == name, instances.c.state.in_(LIVE_STATES))
        .values(state="active", cores_mcpu=cores_mcpu, memory_bytes=memory_bytes,
                time_activated=now, last_heartbeat=now)
    )


async def set_instance_state(conn: AsyncConnection, name: str, state: str, now: float) -> None:
    values: dict[str, Any] = {"state": state}
    if state == "deleted":
        values["time_deleted"] = now
    await conn.execute(update(instances).where(instances.c.name == name).values(**values))


async def set_instance_metadata(conn: AsyncConnection, name: str, metadata: dict[str, Any]) -> None:
    """Add or replace these keys of the instance's metadata (the others, such as its shape, stay)."""
    row = (await conn.execute(select(instances.c.metadata).where(instances.c.name == name))).first()
    merged = {**(row.metadata if row is not None and row.metadata else {}), **metadata}
    await conn.execute(update(instances).where(instances.c.name == name).values(metadata=merged))


async def record_heartbeats(conn: AsyncConnection, seen: Sequence[tuple[str, float]]) -> None:
    if seen:
        await conn.execute(
            update(instances).where(instances.c.name == bindparam("n")).values(last_heartbeat=bindparam("t")),
            [{"n": name, "t": t} for name, t in seen],
        )


async def instance_by_name(conn: AsyncConnection, name: str) -> InstanceRecord | None:
    row = (
        await conn.execute(
            select(
                instances.c.name, instances.c.collection, instances.c.state, instances.c.cores_mcpu,
                instances.c.memory_bytes, instances.c.token_hash, instances.c.metadata,
                instances.c.last_heartbeat, instances.c.gpus, instances.c.gpu_type, instances.c.reserved_for,
            ).where(instances.c.name == name)
        )
    ).first()
    return InstanceRecord(*row) if row is not None else None
