"""Best-fit placement of jobs onto instances by free cores, memory and GPUs (count and type)."""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass
class InstanceCapacity:
    name: str
    free_mcpu: int
    free_memory_bytes: int
    free_gpus: int = 0
    gpu_type: str | None = None

    def fits(self, cores_mcpu: int, memory_bytes: int, gpus: int = 0, gpu_type: str | None = None) -> bool:
        return (
            self.free_mcpu >= cores_mcpu
            and self.free_memory_bytes >= memory_bytes
            and gpus_fit(gpus, gpu_type, self.free_gpus, self.gpu_type)
        )


def gpus_fit(wanted: int, wanted_type: str | None, free: int, instance_type: str | None) -> bool:
    """A job without GPUs fits anywhere; one with GPUs needs enough free devices of the type it names."""
    if wanted <= 0:
        return True
    return free >= wanted and (wanted_type is None or wanted_type == instance_type)


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

    def best_fit(
        self, cores_mcpu: int, memory_bytes: int, gpus: int = 0, gpu_type: str | None = None
    ) -> InstanceCapacity | None:
        """The instance with the fewest free cores that still fits the job (cores, memory, GPUs)."""
        start = bisect.bisect_left(self._order, (cores_mcpu, ""))
        for _free, name in self._order[start:]:
            inst = self._by_name[name]
            gpus_ok = gpus_fit(gpus, gpu_type, inst.free_gpus, inst.gpu_type)
            if inst.free_memory_bytes >= memory_bytes and gpus_ok:
                return inst
        return None

    def take(self, inst: InstanceCapacity, cores_mcpu: int, memory_bytes: int, gpus: int = 0) -> None:
        index = bisect.bisect_left(self._order, (inst.free_mcpu, inst.name))
        del self._order[index]
        inst.free_mcpu -= cores_mcpu
        inst.free_memory_bytes -= memory_bytes
        inst.free_gpus -= gpus
        if inst.free_mcpu > 0:
            bisect.insort(self._order, (inst.free_mcpu, inst.name))
        else:
            del self._by_name[inst.name]


def best_fit(
    instances: Iterable[InstanceCapacity], cores_mcpu: int, memory_bytes: int
) -> InstanceCapacity | None:
    return FreeCapacityIndex(instances).best_fit(cores_mcpu, memory_bytes)
