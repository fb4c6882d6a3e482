"""One scheduling decision: which ready jobs go to which instances now. Pure, no I/O."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from corral.domain.capacity import Resources
from corral.domain.fair_share import UserDemand, fair_share_cores
from corral.domain.placement import FreeCapacityIndex, InstanceCapacity


@dataclass(slots=True)
class ReadyJob:
    batch_id: int
    job_id: int
    user: str
    cores_mcpu: int
    memory_bytes: int
    n_attempts: int  # attempts already made; the next one is n_attempts + 1
    gpus: int = 0
    gpu_type: str | None = None  # any type when None

    @property
    def key(self) -> tuple[int, int]:
        return (self.batch_id, self.job_id)

    @property
    def resources(self) -> Resources:
        return Resources(self.cores_mcpu, self.memory_bytes, self.gpus, self.gpu_type)


class ReadyQueues:
    """Ready jobs of one pool, a FIFO per user, with each user's total ready cores kept up to date."""

    def __init__(self) -> None:
        self._by_user: dict[str, deque[ReadyJob]] = {}
        self.ready_mcpu: dict[str, int] = {}
        self._keys: set[tuple[int, int]] = set()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: tuple[int, int]) -> bool:
        return key in self._keys

    def push(self, job: ReadyJob) -> bool:
        if job.key in self._keys:
            return False
        self._keys.add(job.key)
        self._by_user.setdefault(job.user, deque()).append(job)
        self.ready_mcpu[job.user] = self.ready_mcpu.get(job.user, 0) + job.cores_mcpu
        return True

    def push_all(self, jobs: Iterable[ReadyJob]) -> int:
        """push() for many jobs, in order (a committed batch queues 100,000); returns how many were new."""
        keys, by_user, ready = self._keys, self._by_user, self.ready_mcpu
        added = 0
        for job in jobs:
            key = (job.batch_id, job.job_id)
            if key in keys:
                continue
            keys.add(key)
            user = job.user
            queue = by_user.get(user)
            if queue is None:
                queue = by_user[user] = deque()
            queue.append(job)
            ready[user] = ready.get(user, 0) + job.cores_mcpu
            added += 1
        return added

    def users(self) -> list[str]:
        return [u for u, q in self._by_user.items() if q]

    def peek(self, user: str) -> ReadyJob | None:
        queue = self._by_user.get(user)
        return queue[0] if queue else None

    def pop(self, user: str) -> ReadyJob:
        job = self._by_user[user].popleft()
        self._forget(job)
        if not self._by_user[user]:
            del self._by_user[user]
        return job

    def take(self, key: tuple[int, int]) -> ReadyJob | None:
        """Remove one job wherever it is in its user's FIFO (a job-private instance came up for it)."""
        if key not in self._keys:
            return None
        for user, queue in self._by_user.items():
            for job in queue:
                if job.key == key:
                    queue.remove(job)
                    self._forget(job)
                    if not queue:
                        del self._by_user[user]
                    return job
        return None

    def remove_where(self, batch_id: int) -> list[ReadyJob]:
        """Drop every queued job of a batch (it was cancelled); returns them."""
        removed: list[ReadyJob] = []
        for user in list(self._by_user):
            kept: deque[ReadyJob] = deque()
            for job in self._by_user[user]:
                if job.batch_id == batch_id:
                    removed.append(job)
                    self._forget(job)
                else:
                    kept.append(job)
            if kept:
                self._by_user[user] = kept
            else:
                del self._by_user[user]
        return removed

    def __iter__(self) -> Iterator[ReadyJob]:
        for queue in self._by_user.values():
            yield from queue

    def _forget(self, job: ReadyJob) -> None:
        self._keys.discard(job.key)
        left = self.ready_mcpu[job.user] - job.cores_mcpu
        if left > 0:
            self.ready_mcpu[job.user] = left
        else:
            del self.ready_mcpu[job.user]


@dataclass(frozen=True, slots=True)
class Placement:
    job: ReadyJob
    instance: str


def plan_placements(
    queues: ReadyQueues,
    instances: Iterable[InstanceCapacity],
    running_mcpu: Mapping[str, int],
    *,
    limit: int | None = None,
) -> list[Placement]:
    """Pop jobs from the queues onto instances: fair shares per user, round robin, best fit.

    A user whose next job fits nowhere waits (its FIFO order is kept); others go on.
    """
    index = FreeCapacityIndex(instances)
    if not len(index) or not len(queues):
        return []
    users = queues.users()
    demands = {u: UserDemand(running_mcpu.get(u, 0), queues.ready_mcpu.get(u, 0)) for u in users}
    shares = fair_share_cores(demands, index.free_mcpu)
    active = deque(u for u in users if shares.get(u, 0) > 0)
    placements: list[Placement] = []
    while active and len(index):
        if limit is not None and len(placements) >= limit:
            break
        user = active.popleft()
        job = queues.peek(user)
        if job is None or shares[user] <= 0:
            continue
        inst = index.best_fit(job.cores_mcpu, job.memory_bytes, job.gpus, job.gpu_type)
        if inst is None:
            continue
        queues.pop(user)
        index.take(inst, job.cores_mcpu, job.memory_bytes, job.gpus)
        shares[user] -= job.cores_mcpu
        placements.append(Placement(job, inst.name))
        active.append(user)
    return placements


def plan_reserved_placements(
    queues: ReadyQueues, reserved: Mapping[tuple[int, int], InstanceCapacity]
) -> list[Placement]:
    """Job-private instances: each takes the one job it was made for, once that job is ready and fits."""
    placements: list[Placement] = []
    for key, inst in reserved.items():
        if key not in queues:
            continue
        job = next(j for j in queues if j.key == key)
        if not inst.fits(job.cores_mcpu, job.memory_bytes, job.gpus, job.gpu_type):
            continue
        queues.take(key)
        placements.append(Placement(job, inst.name))
    return placements
