"""Autoscaling decisions (Hail's approach), pure: how many instances a pool needs, which idle ones go.

A pool grows to serve each user's fair share of its *future* capacity (free cores now plus what the
instances it may still create would add), water-filled over users' ready cores, at most
`max_new_instances_per_loop` at a time; it shrinks by releasing instances idle longer than
`idle_seconds`, never below `min_instances` (standing workers).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from corral.domain.capacity import Resources
from corral.domain.fair_share import UserDemand, fair_share_cores
from corral.domain.scheduling import ReadyJob


@dataclass(frozen=True)
class PoolLimits:
    cores_mcpu: int  # one instance's shape
    memory_bytes: int
    gpus: int = 0
    gpu_type: str | None = None
    min_instances: int = 0
    max_instances: int = 10
    max_live_instances: int | None = None
    max_new_per_loop: int = 4
    idle_seconds: float = 300.0

    @property
    def shape(self) -> Resources:
        return Resources(self.cores_mcpu, self.memory_bytes, self.gpus, self.gpu_type)

    def fits(self, job: ReadyJob) -> bool:
        """Whether one instance of this shape can ever run the job."""
        return job.resources.fits_in(self.shape)

    @property
    def cap(self) -> int:
        if self.max_live_instances is None:
            return self.max_instances
        return min(self.max_instances, self.max_live_instances)


@dataclass(frozen=True)
class InstanceView:
    """One live instance of a collection as the autoscaler sees it."""

    name: str
    pending: bool  # created, its worker not yet active
    free_mcpu: int
    free_gpus: int = 0
    busy: bool = False  # runs at least one attempt
    idle_since: float | None = None  # active and without attempts since then


def pool_instances_to_create(
    limits: PoolLimits,
    demands: Mapping[str, UserDemand],
    instances: Sequence[InstanceView],
    *,
    ready_gpus: int = 0,
) -> int:
    """New instances to ask for in this loop."""
    room = limits.cap - len(instances)
    if room <= 0:
        return 0
    # Pending instances count with their whole shape: they will bring it.
    free_now = sum(limits.cores_mcpu if i.pending else i.free_mcpu for i in instances)
    shares = fair_share_cores(demands, free_now + room * limits.cores_mcpu)
    wanted = sum(min(demands[u].ready_mcpu, shares.get(u, 0)) for u in demands)
    needed = math.ceil(max(0, wanted - free_now) / limits.cores_mcpu)
    if limits.gpus > 0 and ready_gpus > 0:
        free_gpus = sum(limits.gpus if i.pending else i.free_gpus for i in instances)
        needed = max(needed, math.ceil(max(0, ready_gpus - free_gpus) / limits.gpus))
    needed = max(needed, limits.min_instances - len(instances))
    return max(0, min(needed, room, limits.max_new_per_loop))


def pool_instances_to_release(limits: PoolLimits, instances: Sequence[InstanceView], now: float) -> list[str]:
    """Instances idle for `idle_seconds`, longest idle first, keeping `min_instances`."""
    spare = len(instances) - limits.min_instances
    if spare <= 0:
        return []
    idle = [
        i for i in instances
        if not i.pending and not i.busy and i.idle_since is not None
        and now - i.idle_since >= limits.idle_seconds
    ]
    idle.sort(key=lambda i: (i.idle_since or 0.0, i.name))
    return [i.name for i in idle[:spare]]


def private_jobs_to_serve(
    queued: Iterable[ReadyJob], served: set[tuple[int, int]], *, live: int, max_instances: int, max_new: int
) -> list[ReadyJob]:
    """Ready jobs of a job-private collection still without their own instance, within the caps."""
    room = min(max_instances - live, max_new)
    if room <= 0:
        return []
    chosen: list[ReadyJob] = []
    for job in queued:
        if job.key not in served:
            chosen.append(job)
            if len(chosen) >= room:
                break
    return chosen


def route_to_collection(
    pool: str, job: ReadyJob, limits: Mapping[str, PoolLimits], job_private: Sequence[str]
) -> str:
    """The collection whose queue a ready job joins: its pool, unless one instance of the pool's shape can
    never hold it and a job-private collection can size an instance for it (the first such, in order)."""
    pool_limits = limits.get(pool)
    if pool in job_private or pool_limits is None or pool_limits.fits(job):
        return pool
    for name in job_private:
        cap = limits.get(name)
        if cap is None or cap.fits(job):
            return name
    return pool
