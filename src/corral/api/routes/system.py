"""What a user sees of the system: pools (instance collections) with their health, instances with their
host, heartbeat and running jobs, users (admin); and instance tokens for `corral worker --token`."""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

from fastapi import APIRouter

from corral.api.auth import AdminUser, CurrentUser
from corral.api.context import Context
from corral.api.convert import iso
from corral.api.system_schemas import (
    InstanceAttempt,
    InstanceStatus,
    InstanceToken,
    InstanceTokenRequest,
    PoolShape,
    PoolStatus,
    UserInfo,
)
from corral.domain.resources import parse_bytes
from corral.domain.tokens import new_token
from corral.errors import Conflict, InvalidInput, NotFound
from corral.store import instances as instance_store
from corral.store import system_view
from corral.store.system_view import CollectionRecord, InstanceRow, RunningAttempt
from corral.store.users import User

router = APIRouter(prefix="/api/v1", tags=["system"])


def _shape(config: dict[str, Any]) -> PoolShape | None:
    shape = config.get("shape")
    if isinstance(shape, dict):
        return PoolShape(
            cores=shape.get("cores"), memory=shape.get("memory"), gpus=int(shape.get("gpus") or 0),
            gpu_type=shape.get("gpu_type"),
        )
    if "cores" in config:  # local workers: {"workers": n, "cores": c}
        return PoolShape(cores=config.get("cores"))
    return None


def _pool(
    col: CollectionRecord, live: list[InstanceRow], running: list[RunningAttempt], ready: int
) -> PoolStatus:
    active = [i for i in live if i.state == "active"]
    busy = sum(a.cores_mcpu for a in running)
    total = sum(i.cores_mcpu for i in active)
    return PoolStatus(
        name=col.name, kind=col.kind, provider=col.provider, shape=_shape(col.config),
        min_instances=col.config.get("min_instances"), max_instances=col.config.get("max_instances"),
        instances=dict(Counter(i.state for i in live)), cores_total=total / 1000,
        cores_free=max(0, total - busy) / 1000, jobs_running=len(running), jobs_ready=ready,
        health=col.health, last_error=col.last_error, time_last_error=iso(col.time_last_error),
        n_failures=col.n_failures,
    )


@router.get("/pools")
async def list_pools(ctx: Context, _user: CurrentUser) -> list[PoolStatus]:
    """Every instance collection: provider, shape, instances by state, free cores, queued jobs, health."""
    async with ctx.reading() as conn:
        collections = await system_view.list_collections(conn)
        live = await system_view.list_instances(conn)
        running = await system_view.running_attempts(conn, [i.name for i in live])
        ready = await system_view.ready_jobs_by_pool(conn)
    by_pool: dict[str, list[InstanceRow]] = defaultdict(list)
    for inst in live:
        by_pool[inst.collection].append(inst)
    pool_of = {i.name: i.collection for i in live}
    attempts: dict[str, list[RunningAttempt]] = defaultdict(list)
    for a in running:
        attempts[pool_of.get(a.instance_name, "")].append(a)
    return [_pool(c, by_pool[c.name], attempts[c.name], ready.get(c.name, 0)) for c in collections]


@router.get("/pools/{name}")
async def get_pool(name: str, ctx: Context, user: CurrentUser) -> PoolStatus:
    for pool in await list_pools(ctx, user):
        if pool.name == name:
            return pool
    raise NotFound(f"pool: there is no pool {name!r}", field="pool")


def _health(inst: InstanceRow, now: float, timeout: float) -> str:
    if inst.state == "pending":
        return "starting"
    if inst.state != "active":
        return "ended"
    if inst.last_heartbeat is None:
        return "healthy"
    silent = now - inst.last_heartbeat
    return "healthy" if silent <= timeout else f"silent for {silent:.0f}s"


def _text(value: object) -> str | None:
    return None if value is None or value == "" else str(value)


def _instance(
    inst: InstanceRow, running: list[RunningAttempt], viewer: User, now: float, timeout: float
) -> InstanceStatus:
    meta = inst.metadata or {}
    provider_id = meta.get("job_id") or meta.get("pid")
    address = meta.get("address") or meta.get("nodes") or meta.get("where")
    if address is None and meta.get("provider") == "local":
        address = "this machine"
    shown = [
        InstanceAttempt(batch_id=a.batch_id, job_id=a.job_id, attempt_id=a.attempt_id, user=a.user,
                        cores=a.cores_mcpu / 1000)
        if viewer.is_admin or a.user == viewer.name
        else InstanceAttempt(
            batch_id=None, job_id=None, attempt_id=None, user=None, cores=a.cores_mcpu / 1000
        )
        for a in running
    ]
    safe_meta = {k: v for k, v in meta.items() if k not in ("token", "worker_token")}
    return InstanceStatus(
        name=inst.name, pool=inst.collection, state=inst.state, provider=_text(meta.get("provider")),
        host_name=inst.host_name or _text(meta.get("host")), address=_text(address),
        provider_id=_text(provider_id), cores=inst.cores_mcpu / 1000, memory_bytes=inst.memory_bytes,
        gpus=inst.gpus, gpu_type=inst.gpu_type, health=_health(inst, now, timeout),
        time_created=iso(inst.time_created), time_activated=iso(inst.time_activated),
        last_heartbeat=iso(inst.last_heartbeat), jobs_running=len(running), end_reason=inst.end_reason,
        attempts=shown, metadata=safe_meta if viewer.is_admin else {},
    )


@router.get("/instances")
async def list_instances(
    ctx: Context, user: CurrentUser, pool: str | None = None, ended: int = 0
) -> list[InstanceStatus]:
    """Live instances (of `pool`), plus the `ended` most recent ones that went, with why they went."""
    if not 0 <= ended <= 1000:
        raise InvalidInput("ended: give a number from 0 to 1000", field="ended")
    async with ctx.reading() as conn:
        found = await system_view.list_instances(conn, collection=pool, ended=ended)
        running = await system_view.running_attempts(conn, [i.name for i in found])
    by_instance: dict[str, list[RunningAttempt]] = defaultdict(list)
    for a in running:
        by_instance[a.instance_name].append(a)
    now, timeout = time.time(), ctx.settings.heartbeat_timeout
    return [_instance(i, by_instance[i.name], user, now, timeout) for i in found]


@router.get("/instances/{name}")
async def get_instance(name: str, ctx: Context, user: CurrentUser) -> InstanceStatus:
    async with ctx.reading() as conn:
        inst = await system_view.get_instance(conn, name)
        if inst is None:
            raise NotFound(f"instance: there is no instance {name!r}", field="instance")
        running = await system_view.running_attempts(conn, [name])
    return _instance(inst, running, user, time.time(), ctx.settings.heartbeat_timeout)


@router.post("/instances/tokens")
async def create_instance_token(body: InstanceTokenRequest, ctx: Context, _admin: AdminUser) -> InstanceToken:
    """Register an instance for a worker you start yourself (`corral worker --token`); the token is shown
    once. The worker offers its own cores and memory when it calls in; these are the expected ones."""
    pool = body.pool or ctx.settings.pool
    memory = parse_bytes(body.memory, field="memory")
    async with ctx.writing() as conn:
        if await system_view.get_instance(conn, body.name) is not None:
            raise Conflict(f"name: an instance named {body.name!r} already exists", field="name")
        known = {c.name: c for c in await system_view.list_collections(conn)}
        if pool not in known:  # a pool of hand-started workers: no provider brings its instances up
            await instance_store.ensure_collection(conn, pool, kind="pool", provider="manual", config={})
        elif known[pool].kind != "pool":
            raise InvalidInput(f"pool: {pool!r} is a job-private collection; name a pool", field="pool")
    token = new_token()
    await ctx.hooks.register_instance(
        name=body.name, pool=pool, token=token, cores_mcpu=int(body.cores * 1000), memory_bytes=memory,
        metadata={"provider": "manual"}, gpus=body.gpus, gpu_type=body.gpu_type,
    )
    return InstanceToken(
        name=body.name, pool=pool, token=token,
        command=f"corral worker --url URL --name {body.name} --token {token}",
    )


@router.get("/users")
async def list_users(ctx: Context, _admin: AdminUser) -> list[UserInfo]:
    async with ctx.reading() as conn:
        return [UserInfo(**u) for u in await system_view.list_users(conn)]
