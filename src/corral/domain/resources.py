"""Parsing resource requests (cpu, memory, storage) into integers the scheduler works with."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from corral.errors import InvalidInput

_UNITS: dict[str, int] = {
    "": 1,
    "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4,
    "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4,
}
_QUANTITY = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?|\.[0-9]+)\s*([KMGT]i?)?[Bb]?\s*$")
# Memory per core for Hail's named memory classes.
MEMORY_PER_CORE: dict[str, int] = {"lowmem": 1024**3, "standard": 4 * 1024**3, "highmem": 8 * 1024**3}
DEFAULT_CPU_MCPU = 1000
DEFAULT_MEMORY = "standard"
MAX_MCPU = 2**31 - 1  # about two million cores: more than any instance, and what a 32-bit column holds
MAX_BYTES = 2**62  # 4 EiB


def parse_cpu_mcpu(value: str | float | int | None, *, field: str = "resources.cpu") -> int:
    """'1', '0.5', 0.25, '250m' -> milli-cores. Anything else is a 400 naming the field."""
    if value is None:
        return DEFAULT_CPU_MCPU
    text = str(value).strip()
    try:
        mcpu = float(text[:-1]) if text.endswith("m") else float(text) * 1000
    except ValueError:
        raise InvalidInput(
            f"{field}: {value!r} is not a cpu count; use a number of cores such as '1', '0.5' or '250m'",
            field=field,
        ) from None
    if not math.isfinite(mcpu) or mcpu <= 0:
        raise InvalidInput(f"{field}: {value!r} must be a positive number of cores", field=field)
    if mcpu > MAX_MCPU:
        raise InvalidInput(f"{field}: {value!r} is more cores than any machine has", field=field)
    return max(1, math.ceil(mcpu))


def parse_bytes(value: str | float | int, *, field: str) -> int:
    """'256Mi', '1G', '1.5Gi', 1048576 -> bytes."""
    if isinstance(value, int | float) and not isinstance(value, bool):
        if value < 0 or not math.isfinite(value):
            raise InvalidInput(f"{field}: {value!r} must not be negative", field=field)
        return _bounded(int(value), value, field)
    match = _QUANTITY.match(str(value))
    if not match:
        raise InvalidInput(
            f"{field}: {value!r} is not a size; use a number with an optional unit such as "
            "'512Mi', '2Gi' or '1G'",
            field=field,
        )
    number, unit = match.group(1), match.group(2) or ""
    return _bounded(int(float(number) * _UNITS[unit]), value, field)


def _bounded(size: int, value: object, field: str) -> int:
    if size > MAX_BYTES:
        raise InvalidInput(f"{field}: {value!r} is larger than any machine (at most 4 EiB)", field=field)
    return size


def parse_memory_bytes(
    value: str | float | int | None, cores_mcpu: int, *, field: str = "resources.memory"
) -> int:
    """Bytes of memory for a job; 'lowmem' | 'standard' | 'highmem' scale with the cores, as in Hail."""
    if value is None:
        value = DEFAULT_MEMORY
    if isinstance(value, str) and value.strip() in MEMORY_PER_CORE:
        return MEMORY_PER_CORE[value.strip()] * cores_mcpu // 1000
    size = parse_bytes(value, field=field)
    if size <= 0:
        raise InvalidInput(f"{field}: {value!r} must be a positive size such as '256Mi'", field=field)
    return size


@dataclass(frozen=True)
class ResourceRequest:
    cores_mcpu: int
    memory_bytes: int
    storage_bytes: int
    gpus: int = 0
    gpu_type: str | None = None  # any type when None


def parse_resources(
    cpu: str | float | int | None,
    memory: str | float | int | None,
    storage: str | float | int | None,
    *,
    gpus: int = 0,
    gpu_type: str | None = None,
    prefix: str = "resources",
) -> ResourceRequest:
    cores = parse_cpu_mcpu(cpu, field=f"{prefix}.cpu")
    memory_bytes = parse_memory_bytes(memory, cores, field=f"{prefix}.memory")
    storage_bytes = 0 if storage is None else parse_bytes(storage, field=f"{prefix}.storage")
    if gpus < 0:
        raise InvalidInput(
            f"{prefix}.gpus: {gpus} must be 0 or a positive number of GPUs", field=f"{prefix}.gpus"
        )
    if gpu_type is not None and not gpu_type.strip():
        raise InvalidInput(
            f"{prefix}.gpu_type: give a GPU type such as 'a100', or leave it out for any type",
            field=f"{prefix}.gpu_type",
        )
    return ResourceRequest(cores, memory_bytes, storage_bytes, gpus, gpu_type.strip() if gpu_type else None)
