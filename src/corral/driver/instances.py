"""The driver's in-memory view of instances: capacity, assigned attempts, what to cancel, heartbeats."""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from corral.domain.capacity import Resources
from corral.driver.lookahead import LookaheadState
from corral.worker.protocol import AttemptKey

RELEASED_KEPT = 10_000  # per instance: far more than its attempts in flight


@dataclass(slots=True)
class AttemptInFlight:
    """An attempt the driver has committed to an instance and not yet seen end."""

    batch_id: int
    job_id: int
    attempt_id: int
    user: str
    pool: str
    cores_mcpu: int
    memory_bytes: int
    payload: dict[str, Any]  # the assignment as sent to the worker
    time_assigned: float
    instance_name: str
    time_started: float | None = None
    gpus: int = 0

    @property
    def key(self) -> str:
        return str(AttemptKey(self.batch_id, self.job_id, self.attempt_id))


@dataclass(eq=False)
class InstanceState:
    name: str
    pool: str
    token_hash: str
    cores_mcpu: int
    memory_bytes: int
    active: bool = False
    draining: bool = False
    last_seen: float = field(default_factory=time.time)
    heartbeat_saved: float = 0.0
    assigned: dict[str, AttemptInFlight] = field(default_factory=dict)
    delivered: set[str] = field(default_factory=set)
    to_cancel: set[str] = field(default_factory=set)
    # Assignments handed in an events reply (key -> monotonic time): a poll already waiting, or another
    # events post already on the wire, when they were handed does not send them again (handed_since).
    # Events requests that will carry work are in flight meanwhile.
    handed: dict[str, float] = field(default_factory=dict)
    events_in_flight: int = 0
    # Attempts released lately (most ended by this worker's own completion): a poll built before their
    # acknowledgement still lists them; that alone is no reason to answer it at once (see Driver.poll).
    released: OrderedDict[str, None] = field(default_factory=OrderedDict)
    changed: asyncio.Event = field(default_factory=asyncio.Event)
    gpus: int = 0
    gpu_type: str | None = None
    reserved_for: tuple[int, int] | None = None  # a job-private instance runs only this job
    # Not read by billing: the ledger prices attempts from the instance's metadata in the store
    # (`price_per_hour`, or `cost_per_core_hour` x cores), see driver/accounting.py.
    cost_per_core_hour: float = 0.0
    # The registered shape: what the instance may claim at activation, at most (workers are not trusted).
    shape_mcpu: int = 0
    shape_memory: int = 0
    # The worker holds assignments beyond its free cores (declared at activation; driver/lookahead.py).
    queues: bool = False
    lookahead: LookaheadState = field(default_factory=LookaheadState)

    def __post_init__(self) -> None:
        self.shape_mcpu = self.shape_mcpu or self.cores_mcpu
        self.shape_memory = self.shape_memory or self.memory_bytes

    @property
    def resources(self) -> Resources:
        """What the instance has in all (not what is free)."""
        return Resources(self.cores_mcpu, self.memory_bytes, self.gpus, self.gpu_type)

    @property
    def free_gpus(self) -> int:
        return self.gpus - sum(a.gpus for a in self.assigned.values())

    @property
    def used_mcpu(self) -> int:
        return sum(a.cores_mcpu for a in self.assigned.values())

    @property
    def used_memory(self) -> int:
        return sum(a.memory_bytes for a in self.assigned.values())

    @property
    def free_mcpu(self) -> int:
        return self.cores_mcpu - self.used_mcpu

    @property
    def free_memory(self) -> int:
        return self.memory_bytes - self.used_memory

    @property
    def schedulable(self) -> bool:
        return self.active and not self.draining

    def forget(self, key: str) -> None:
        """The attempt no longer holds this instance's resources."""
        if self.assigned.pop(key, None) is None:
            return
        self.delivered.discard(key)
        self.to_cancel.discard(key)
        self.handed.pop(key, None)
        self.released[key] = None
        if len(self.released) > RELEASED_KEPT:
            self.released.popitem(last=False)

    def notify(self) -> None:
        self.changed.set()

    def handed_since(self, since: float) -> set[str]:
        """Assignments an events reply handed at `since` (time.monotonic()) or later."""
        return {k for k, t in self.handed.items() if t >= since}

    def pending_for(
        self, known: set[str], *, offer: bool = True
    ) -> tuple[list[dict[str, Any]], list[str]]:
        """What a polling worker is missing (assignments, unless `offer` is false) and must stop (cancels)."""
        self.delivered.update(k for k in known if k in self.assigned)
        assign = [
            a.payload for k, a in self.assigned.items() if k not in known and k not in self.to_cancel
        ] if offer else []
        cancel = [k for k in known if k in self.to_cancel or k not in self.assigned]
        self.delivered.update(a["key"] for a in assign)
        return assign, cancel
