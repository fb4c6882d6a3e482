"""Which of the worker's GPUs each attempt may use: the job sees only its devices (CUDA_VISIBLE_DEVICES)."""

from __future__ import annotations

import os
from pathlib import Path

GPUS_ENV = "CORRAL_WORKER_GPUS"  # device ids this worker may hand out, e.g. "0,1,2,3"


def parse_gpu_ids(text: str | None) -> list[str]:
    """"0,1,3" -> ["0", "1", "3"]; a bare count "4" means devices 0..3."""
    if not text or not text.strip():
        return []
    parts = [p.strip() for p in text.split(",") if p.strip()]
    if len(parts) == 1 and parts[0].isdigit() and "," not in text:
        return [str(i) for i in range(int(parts[0]))]
    return parts


class GpuDevices:
    """Free and assigned GPU ids of one worker."""

    def __init__(self, ids: list[str]) -> None:
        self.ids = list(ids)
        self._free = list(ids)
        self._held: dict[str, list[str]] = {}

    @classmethod
    def from_env(cls) -> GpuDevices:
        return cls(parse_gpu_ids(os.environ.get(GPUS_ENV)))

    def acquire(self, key: str, count: int) -> list[str] | None:
        """Devices for attempt `key`, or None when fewer than `count` are free (the driver overcommitted)."""
        if count <= 0:
            return []
        if key in self._held:
            return self._held[key]
        if len(self._free) < count:
            return None
        taken, self._free = self._free[:count], self._free[count:]
        self._held[key] = taken
        return taken

    def release(self, key: str) -> None:
        freed = set(self._held.pop(key, []))
        self._free = [d for d in self.ids if d in freed or d in self._free]  # in the worker's order


def visible_devices_env(devices: list[str]) -> dict[str, str]:
    """The environment that limits CUDA (and ROCm) to these devices; an empty list hides all of them."""
    joined = ",".join(devices)
    return {"CUDA_VISIBLE_DEVICES": joined, "NVIDIA_VISIBLE_DEVICES": joined or "none",
            "HIP_VISIBLE_DEVICES": joined}


def device_nodes(devices: list[str]) -> list[Path]:
    """/dev/nvidiaN of the assigned devices plus the control nodes, for sandboxes that bind devices."""
    nodes = [Path(f"/dev/nvidia{d}") for d in devices if d.isdigit()]
    nodes += [Path("/dev/nvidiactl"), Path("/dev/nvidia-uvm"), Path("/dev/nvidia-uvm-tools")]
    return [n for n in nodes if n.exists()] if devices else []
