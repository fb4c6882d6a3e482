"""Which pool runs a job that names none (pure): the cheapest of those that can start it soonest.

Every candidate pool is described by what the autoscaler knows now: whether one of its instances could
ever run the job, whether one has room for it now, how long a new instance takes to come up (if the pool
may still grow), and its price per core-hour. A pool that can start the job now beats one that must first
bring up an instance; among pools that start it equally soon (within `tolerance` seconds), the cheaper wins;
then the pool named first (the server's default pool first) — so the rule is deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class PoolCandidate:
    name: str
    fits: bool  # one instance of this pool can ever run the job (cores, memory, GPUs and their type)
    room_now: bool  # an active instance has room for it now
    can_grow: bool  # the pool may add an instance (below its limits, budget and inventory)
    startup_seconds: float  # how long a new instance takes to take jobs (SSH install, sbatch, renting)
    price_per_core_hour: float

    @property
    def start_in(self) -> float:
        """Seconds until the job could start here (infinite: only when a running job ends)."""
        if not self.fits:
            return math.inf
        if self.room_now:
            return 0.0
        return self.startup_seconds if self.can_grow else math.inf


def choose_pool(candidates: Sequence[PoolCandidate], *, tolerance: float = 1.0) -> str | None:
    """The chosen pool's name; None when no pool can ever run the job."""
    fitting = [(i, c) for i, c in enumerate(candidates) if c.fits]
    if not fitting:
        return None
    soonest = min(c.start_in for _, c in fitting)
    if math.isinf(soonest):  # every fitting pool is full: wait where it is cheapest
        contenders = fitting
    else:
        contenders = [(i, c) for i, c in fitting if c.start_in <= soonest + tolerance]
    _, best = min(contenders, key=lambda ic: (ic[1].price_per_core_hour, ic[0]))
    return best.name
