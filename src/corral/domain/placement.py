"""Best-fit placement of a job onto instances by free cores and memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass
class InstanceCapacity:
    name: str
    free_mcpu: int
    free_memory_bytes: int

    def fits(self, cores_mcpu: int, memory_bytes: int) -> bool:
        return self.free_mcpu >= cores_mcpu and self.free_memory_bytes >= memory_bytes


def best_fit(
    instances: Sequence[InstanceCapacity], cores_mcpu: int, memory_bytes: int
) -> InstanceCapacity | None:
    """The instance that the job fits on with the fewest cores left over (ties: least memory left)."""
    best: InstanceCapacity | None = None
    for inst in instances:
        if not inst.fits(cores_mcpu, memory_bytes):
            continue
        if best is None or (inst.free_mcpu, inst.free_memory_bytes) < (
            best.free_mcpu,
            best.free_memory_bytes,
        ):
            best = inst
    return best
