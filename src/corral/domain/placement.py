"""Best-fit placement of jobs onto instances by free cores and memory."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class InstanceCapacity:
    name: str
    free_mcpu: int
    free_memory_bytes: int

    def fits(self, cores_mcpu: int, memory_bytes: int) -> bool:
        return self.free_mcpu >= cores_mcpu and self.free_memory_bytes >= memory_bytes


class FreeCapacityIndex:
    """Instances ordered by free cores, so best fit is a bisection rather than a scan of every instance."""

    def __init__(self, instances: Iterable[InstanceCapacity]) -> None:
        self._by_name = {inst.name: inst for inst in instances if inst.free_mcpu > 0}
        self._order = sorted((inst.free_mcpu, inst.name) for inst in self._by_name.values())

    @property
    def free_mcpu(self) -> int:
        return sum(free for free, _ in self._order)

    def __len__(self) -> int:
        return len(self._order)

    def best_fit(self, cores_mcpu: int, memory_bytes: int) -> InstanceCapacity | None:
        """The instance with the fewest free cores that still fits the job (cores and memory)."""
        start = bisect.bisect_left(self._order, (cores_mcpu, ""))
        for _free, name in self._order[start:]:
            inst = self._by_name[name]
            if inst.free_memory_bytes >= memory_bytes:
                return inst
        return None

    def take(self, inst: InstanceCapacity, cores_mcpu: int, memory_bytes: int) -> None:
        index = bisect.bisect_left(self._order, (inst.free_mcpu, inst.name))
        del self._order[index]
        inst.free_mcpu -= cores_mcpu
        inst.free_memory_bytes -= memory_bytes
        if inst.free_mcpu > 0:
            bisect.insort(self._order, (inst.free_mcpu, inst.name))
        else:
            del self._by_name[inst.name]


def best_fit(
    instances: Iterable[InstanceCapacity], cores_mcpu: int, memory_bytes: int
) -> InstanceCapacity | None:
    return FreeCapacityIndex(instances).best_fit(cores_mcpu, memory_bytes)
