"""Routing a job that names no pool (with `pool_choice = "cheapest"`): the autoscaler describes every pool
as the pure rule in domain/pool_choice.py needs, and the rule picks."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from corral.config import Settings
from corral.domain.autoscaling import PoolLimits
from corral.domain.placement import gpus_fit
from corral.domain.pool_choice import PoolCandidate, choose_pool
from corral.domain.scheduling import ReadyJob
from corral.driver.collections import collection_shape
from corral.driver.instances import InstanceState
from corral.providers.config import InstanceCollectionConfig

# Seconds a new instance takes to take jobs, when the collection does not say (startup_seconds).
TYPICAL_STARTUP = {"ssh": 15.0, "slurm": 10.0, "vastai": 240.0}


def _room(inst: InstanceState, job: ReadyJob) -> bool:
    return (
        inst.schedulable
        and inst.reserved_for is None
        and inst.free_mcpu >= job.cores_mcpu
        and inst.free_memory >= job.memory_bytes
        and gpus_fit(job.gpus, job.gpu_type, inst.free_gpus, inst.gpu_type)
    )


def _could_ever(inst: InstanceState, job: ReadyJob) -> bool:
    return (
        inst.cores_mcpu >= job.cores_mcpu
        and inst.memory_bytes >= job.memory_bytes
        and gpus_fit(job.gpus, job.gpu_type, inst.gpus, inst.gpu_type)
    )


def cheapest_pool(
    job: ReadyJob,
    *,
    settings: Settings,
    collections: Mapping[str, InstanceCollectionConfig],
    limits: Mapping[str, PoolLimits],
    instances: Mapping[str, InstanceState],
    can_grow: Callable[[str], bool],
) -> str:
    """The pool for a job queued on the default pool; the default pool when nothing else is better."""
    default = settings.pool
    candidates: list[PoolCandidate] = []
    if default not in collections:  # the local workers' pool
        local = [i for i in instances.values() if i.pool == default]
        candidates.append(
            PoolCandidate(
                default,
                fits=any(_could_ever(i, job) for i in local),
                room_now=any(_room(i, job) for i in local),
                can_grow=False,
                startup_seconds=0.0,
                price_per_core_hour=settings.cost_per_core_hour,
            )
        )
    ordered = sorted(collections.values(), key=lambda c: c.name != default)
    for col in ordered:
        lim = limits.get(col.name)
        shape = collection_shape(col)
        if col.kind != "pool" or lim is None or shape is None:
            continue
        mine = [i for i in instances.values() if i.pool == col.name]
        price = shape.price_per_hour / shape.cores if shape.price_per_hour else settings.cost_per_core_hour
        if col.provider == "vastai" and not shape.price_per_hour:
            cap = col.provider_options.get("max_price_per_hour")
            price = float(cap) / shape.cores if isinstance(cap, int | float) else price
        candidates.append(
            PoolCandidate(
                col.name,
                fits=lim.fits(job),
                room_now=any(_room(i, job) for i in mine),
                can_grow=can_grow(col.name),
                startup_seconds=col.startup_seconds
                if col.startup_seconds is not None
                else TYPICAL_STARTUP.get(col.provider, 60.0),
                price_per_core_hour=price,
            )
        )
    return choose_pool(candidates) or default
