"""W7: one scheduling decision pass over 1,000,000 ready jobs, 1,000 users, 1,000 instances (pure)."""

from __future__ import annotations

import gc
import random
import time

from bench.context import Context
from bench.model import Result, measured
from corral.domain.placement import InstanceCapacity
from corral.domain.scheduling import ReadyJob, ReadyQueues, plan_placements

GIB = 1024**3


def build(
    n_jobs: int, n_users: int, n_instances: int, seed: int
) -> tuple[ReadyQueues, list[InstanceCapacity], dict[str, int]]:
    """Ready jobs of 0.25-2 cores spread over users (batch per user), 16-core instances half busy."""
    rng = random.Random(seed)
    queues = ReadyQueues()
    users = [f"user{u}" for u in range(n_users)]
    sizes = (250, 500, 1000, 2000)
    for i in range(n_jobs):
        u = i % n_users
        queues.push(ReadyJob(u + 1, i // n_users + 1, users[u], sizes[rng.randrange(4)], GIB, 0))
    instances = [
        InstanceCapacity(f"inst{i}", rng.randrange(1, 17) * 1000, 64 * GIB) for i in range(n_instances)
    ]
    running = {user: rng.randrange(0, 8) * 1000 for user in users}
    return queues, instances, running


def run(ctx: Context) -> list[Result]:
    s = ctx.sizes
    samples: list[float] = []
    placed = 0
    for rep in range(s.w7_repeats):
        queues, instances, running = build(s.w7_jobs, s.w7_users, s.w7_instances, seed=rep)
        gc.collect()  # the million objects just built are old by the time a real driver decides
        t0 = time.perf_counter()
        placements = plan_placements(queues, instances, running)
        samples.append((time.perf_counter() - t0) * 1000)
        placed = len(placements)
        del queues, instances, placements
    note = (f"{s.w7_jobs:,} ready jobs, {s.w7_users:,} users, {s.w7_instances:,} instances "
            f"(1-16 free cores each); {placed:,} placements per pass")
    ctx.log(f"W7 decision pass: {sorted(samples)} ms; {note}")
    return [measured("W7", "Corral", "decision pass", samples, "ms", note=note)]
