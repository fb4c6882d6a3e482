"""The driver's in-memory state checked against itself and the store, between ticks (no tick half-done)."""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING

from corral.store import invariants as store_invariants
from corral.store import scheduling as q
from corral.store.invariants import LIMIT, Violation
from corral.worker.protocol import AttemptKey

if TYPE_CHECKING:
    from corral.driver.driver import Driver


async def check_driver(driver: Driver) -> list[Violation]:
    """The store's invariants, and: the running cores the driver counts per pool and user equal the sum
    of its assignments; its assignments are exactly the attempts the store has running."""
    async with driver.between_ticks():
        async with driver.engine.connect() as conn:
            conn = await conn.execution_options(readonly=True)
            async with conn.begin():
                found = await store_invariants.check_store(conn)
                running = await q.load_running_attempts(conn)
        found += _memory(driver, {str(AttemptKey(a.batch_id, a.job_id, a.attempt_id)) for a in running})
    return found


def _memory(driver: Driver, running_in_store: set[str]) -> list[Violation]:
    out: list[Violation] = []
    assigned: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    in_memory: set[str] = set()
    for inst in driver.instances.values():
        if not inst.token_hash:
            continue  # a gone instance's attempts, ended as lost by the next tick
        for key, flight in inst.assigned.items():
            assigned[flight.pool][flight.user] += flight.cores_mcpu
            if key not in inst.to_cancel:  # a cancelled attempt ended in the store; its cores wait for
                in_memory.add(key)  # the worker to say the process is gone
    for pool in set(assigned) | set(driver.running_mcpu):
        counted = {u: c for u, c in driver.running_mcpu.get(pool, {}).items() if c}
        summed = {u: c for u, c in assigned.get(pool, {}).items() if c}
        if counted != summed:
            out.append(Violation("driver cores", f"pool {pool}: running cores by user {counted} but its "
                                 f"assignments add up to {summed}"))
    for key in sorted(in_memory - running_in_store)[:LIMIT]:
        out.append(Violation("driver assignments", f"attempt {key} is assigned in memory, not running in "
                             "the store"))
    for key in sorted(running_in_store - in_memory)[:LIMIT]:
        out.append(Violation("driver assignments", f"attempt {key} is running in the store, unknown to "
                             "the driver"))
    return out
