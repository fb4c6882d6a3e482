"""Routing a job that names no pool (with `pool_choice = "cheapest"`): the driver describes every pool the
way the pure rule in domain/pool_choice.py needs, and the rule picks.

The pools a job naming none may go to are the server's default pool and every configured instance
collection of kind "pool" (`routable_pools`, built once from the settings). Each is judged on what the
driver knows now: its configured shape (or, for the local workers' pool, its live instances), the room its
instances have after the jobs already queued there, whether it may still add an instance, how long one
takes to come up and its price per core-hour.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from corral.config import Settings
from corral.domain.autoscaling import PoolLimits
from corral.domain.capacity import Resources, largest
from corral.domain.placement import gpus_fit
from corral.domain.pool_choice import PoolCandidate, choose_pool
from corral.domain.scheduling import ReadyJob
from corral.driver.collections import collection_limits, collection_shape
from corral.driver.instances import InstanceState
from corral.providers.config import InstanceCollectionConfig

# Seconds a new instance takes to take jobs, when the collection does not say (startup_seconds).
TYPICAL_STARTUP = {"ssh": 15.0, "slurm": 10.0, "vastai": 240.0}


@dataclass(frozen=True)
class RoutablePool:
    """A pool a job naming none may be sent to."""

    name: str
    limits: PoolLimits | None  # None: the local workers' pool, sized by its workers
    price_per_core_hour: float
    startup_seconds: float
    local_workers: int = 0  # the local workers' pool: how many the server starts


@dataclass(frozen=True)
class PoolView:
    """The shared instances of each pool and their free cores, taken once per driver tick (routing a large
    batch does not walk every instance per job)."""

    instances: dict[str, list[InstanceState]]
    free_mcpu: dict[str, int]


def pool_view(instances: Iterable[InstanceState]) -> PoolView:
    by_pool: dict[str, list[InstanceState]] = {}
    free: dict[str, int] = {}
    for inst in instances:
        if inst.reserved_for is None:
            by_pool.setdefault(inst.pool, []).append(inst)
            if inst.schedulable:
                free[inst.pool] = free.get(inst.pool, 0) + max(0, inst.free_mcpu)
    return PoolView(by_pool, free)


@dataclass(frozen=True)
class PoolRoute:
    pool: str
    reason: str  # why the job waits there, in the user's words (its waiting_reason until it starts)


def _price(col: InstanceCollectionConfig, settings: Settings) -> float:
    shape = collection_shape(col)
    assert shape is not None
    if shape.price_per_hour:
        return shape.price_per_hour / shape.cores
    cap = col.provider_options.get("max_price_per_hour")  # a rented host costs at most its cap
    if col.provider == "vastai" and isinstance(cap, int | float) and not isinstance(cap, bool):
        return float(cap) / shape.cores
    return settings.cost_per_core_hour


def routable_pools(settings: Settings) -> list[RoutablePool]:
    """The default pool first (the rule's tie-break), then the configured pools in their order."""
    default = settings.pool
    pools: list[RoutablePool] = []
    names = {c.name for c in settings.instance_collections}
    if default not in names:  # the local workers' pool
        local = RoutablePool(default, None, settings.cost_per_core_hour, 5.0, settings.local_workers)
        pools.append(local)
    for col in sorted(settings.instance_collections, key=lambda c: c.name != default):
        limits = collection_limits(col)
        if col.kind != "pool" or limits is None:
            continue
        startup = col.startup_seconds
        if startup is None:
            startup = TYPICAL_STARTUP.get(col.provider, 60.0)
        pools.append(RoutablePool(col.name, limits, _price(col, settings), startup))
    return pools


def _room(inst: InstanceState, job: ReadyJob) -> bool:
    return (
        inst.schedulable
        and inst.reserved_for is None
        and inst.free_mcpu >= job.cores_mcpu
        and inst.free_memory >= job.memory_bytes
        and gpus_fit(job.gpus, job.gpu_type, inst.free_gpus, inst.gpu_type)
    )


def _local_largest(mine: Sequence[InstanceState], known: Resources | None) -> Resources | None:
    return largest([*(i.resources for i in mine), *([known] if known is not None else [])])


def _describe(pool: RoutablePool, mine: Sequence[InstanceState], known: Resources | None) -> str:
    if pool.limits is not None:
        return pool.limits.shape.describe()
    biggest = _local_largest(mine, known)
    return biggest.describe() if biggest is not None else "no worker"


def route_unnamed(
    job: ReadyJob,
    pools: Sequence[RoutablePool],
    view: PoolView,
    *,
    queued_mcpu: Mapping[str, int],
    can_grow: Callable[[RoutablePool, int], bool] | None = None,
    local_size: Resources | None = None,
) -> PoolRoute | None:
    """Where a job that names no pool goes, and why it waits there; None when no pool can ever run it.

    `queued_mcpu`: cores of jobs already queued per pool (a pool has room now only for what they leave);
    `can_grow(pool, live)`: whether the pool may add an instance (default: fewer live than its cap);
    `local_size`: the local workers' size as their provider recorded it (before they register)."""
    by_pool = view.instances
    need = job.resources
    candidates: list[PoolCandidate] = []
    for pool in pools:
        mine = by_pool.get(pool.name, [])
        if pool.limits is not None:
            fits = pool.limits.fits(job)
            growable = (can_grow(pool, len(mine)) if can_grow is not None
                        else len(mine) < pool.limits.cap)
        else:
            biggest = _local_largest(mine, local_size)
            fits = biggest is not None and need.fits_in(biggest)
            growable = len(mine) < pool.local_workers  # workers still starting
        free = view.free_mcpu.get(pool.name, 0) - queued_mcpu.get(pool.name, 0)
        room_now = fits and free >= job.cores_mcpu and any(_room(i, job) for i in mine)
        candidates.append(
            PoolCandidate(pool.name, fits, room_now, growable, pool.startup_seconds, pool.price_per_core_hour)
        )
    chosen = choose_pool(candidates)
    if chosen is None:
        return None
    return PoolRoute(chosen, _reason(chosen, candidates, pools, by_pool, local_size))


def _reason(
    chosen: str,
    candidates: Sequence[PoolCandidate],
    pools: Sequence[RoutablePool],
    by_pool: Mapping[str, Sequence[InstanceState]],
    local_size: Resources | None,
) -> str:
    best = next(c for c in candidates if c.name == chosen)
    if best.room_now:
        wait = "waiting for its turn there"
    elif best.can_grow:
        wait = f"waiting for a new instance there (about {best.start_in:.0f}s)"
    else:
        wait = "waiting for room there"
    others: list[str] = []
    for cand, pool in zip(candidates, pools, strict=True):
        if cand.name == chosen:
            continue
        if not cand.fits:
            size = _describe(pool, by_pool.get(pool.name, []), local_size)
            others.append(f"{cand.name} is too small ({size})")
        elif cand.start_in > best.start_in + 1.0:
            others.append(f"{cand.name} cannot start it as soon")
        else:
            others.append(f"{cand.name} costs more (${cand.price_per_core_hour:g}/core-hour)")
    text = (
        f"names no pool: sent to pool {chosen} (${best.price_per_core_hour:g}/core-hour), the cheapest that "
        f"can start it soonest; {wait}"
    )
    if others:
        text += "; " + ", ".join(others)
    return text if len(text) <= 480 else text[:477] + "..."


def cheapest_pool(
    job: ReadyJob,
    *,
    settings: Settings,
    collections: Mapping[str, InstanceCollectionConfig],
    limits: Mapping[str, PoolLimits],
    instances: Mapping[str, InstanceState],
    can_grow: Callable[[str], bool],
    queued_mcpu: Mapping[str, int] | None = None,
) -> str:
    """The pool for a job queued on the default pool; the default pool when none can ever run it."""
    configured = settings.model_copy(update={"instance_collections": list(collections.values())})
    pools = [p for p in routable_pools(configured) if p.limits is None or p.name in limits]
    route = route_unnamed(
        job, pools, pool_view(instances.values()), queued_mcpu=queued_mcpu or {},
        can_grow=lambda pool, _live: can_grow(pool.name),
    )
    return route.pool if route is not None else settings.pool
