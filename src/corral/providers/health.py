"""Health of SSH-reached instances: one remote command samples disk, memory and (where present) GPUs;
parsing and judging the sample are pure.

Thresholds (the `health` provider option), all optional:
    min_free_disk = "5Gi"          # in the worker's directory
    min_free_memory = "512Mi"
    max_gpu_temperature = 90       # degrees C
    max_ecc_errors = 0             # uncorrected volatile ECC errors per GPU
An unhealthy instance is reported gone with the reason: its attempts are retried elsewhere and it is
released. The last samples are kept on the instance (`health` in its metadata) so users see the history.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import asyncssh
from pydantic import BaseModel, ConfigDict, Field

from corral.domain.resources import parse_bytes

if TYPE_CHECKING:
    from corral.providers.ssh.session import HostSession

GPU_QUERY = (
    "index,name,utilization.gpu,memory.used,memory.total,temperature.gpu,"
    "ecc.errors.uncorrected.volatile.total"
)
HISTORY = 20  # samples kept per instance


def health_command(work_dir: str) -> str:
    d = shlex.quote(work_dir)
    return (
        f"mkdir -p {d}; echo '== disk'; df -Pk {d} | awk 'NR==2 {{print $2 * 1024, $4 * 1024}}'; "
        "echo '== memory'; awk '/^MemTotal:|^MemAvailable:/ {print $2 * 1024}' /proc/meminfo | paste -sd' '; "
        "echo '== gpus'; if command -v nvidia-smi >/dev/null 2>&1; then "
        f"nvidia-smi --query-gpu={GPU_QUERY} --format=csv,noheader,nounits 2>&1 "
        '|| echo "nvidia-smi failed: $?"; '
        "else echo none; fi"
    )


class HealthThresholds(BaseModel):
    model_config = ConfigDict(extra="forbid")

    min_free_disk: str | None = "1Gi"
    min_free_memory: str | None = None
    max_gpu_temperature: float | None = Field(default=90.0, gt=0)
    max_ecc_errors: int | None = Field(default=0, ge=0)


@dataclass
class GpuHealth:
    index: int
    name: str
    utilization: float
    memory_used_mb: float
    memory_total_mb: float
    temperature: float
    ecc_errors: int


@dataclass
class HealthSample:
    time: float
    disk_total: int = 0
    disk_free: int = 0
    memory_total: int = 0
    memory_available: int = 0
    gpus: list[GpuHealth] = field(default_factory=list)
    gpu_error: str | None = None
    nvidia_smi: bool = True  # False: the host has no nvidia-smi (GPU state not sampled, not judged)
    healthy: bool = True
    problems: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _number(text: str) -> float:
    try:
        return float(text.strip())
    except ValueError:
        return 0.0  # "[N/A]" (no ECC on consumer cards)


def parse_sample(output: str, now: float | None = None) -> HealthSample:
    sample = HealthSample(time=now if now is not None else time.time())
    section = ""
    for raw in output.splitlines():
        line = raw.strip()
        if line.startswith("== "):
            section = line[3:]
            continue
        if not line:
            continue
        parts = line.split()
        if section == "disk" and len(parts) >= 2:
            sample.disk_total, sample.disk_free = int(float(parts[0])), int(float(parts[1]))
        elif section == "memory" and len(parts) >= 2:
            sample.memory_total, sample.memory_available = int(float(parts[0])), int(float(parts[1]))
        elif section == "gpus" and line == "none":
            sample.nvidia_smi = False
        elif section == "gpus":
            cells = [c.strip() for c in line.split(",")]
            if len(cells) != 7 or not cells[0].isdigit():
                sample.gpu_error = line[:300]
                continue
            sample.gpus.append(
                GpuHealth(
                    int(cells[0]),
                    cells[1],
                    _number(cells[2]),
                    _number(cells[3]),
                    _number(cells[4]),
                    _number(cells[5]),
                    int(_number(cells[6])),
                )
            )
    return sample


def judge(sample: HealthSample, limits: HealthThresholds, *, expected_gpus: int = 0) -> HealthSample:
    """Fill in `healthy` and `problems` (each in words)."""
    problems: list[str] = []
    if limits.min_free_disk is not None and sample.disk_total:
        need = parse_bytes(limits.min_free_disk, field="health.min_free_disk")
        if sample.disk_free < need:
            problems.append(f"free disk {sample.disk_free >> 20} MiB < {limits.min_free_disk}")
    if limits.min_free_memory is not None and sample.memory_total:
        need = parse_bytes(limits.min_free_memory, field="health.min_free_memory")
        if sample.memory_available < need:
            problems.append(
                f"available memory {sample.memory_available >> 20} MiB < {limits.min_free_memory}"
            )
    if sample.gpu_error:
        problems.append(f"GPU query failed: {sample.gpu_error}")
    if expected_gpus and sample.nvidia_smi and len(sample.gpus) < expected_gpus and not sample.gpu_error:
        problems.append(f"{len(sample.gpus)} GPUs visible, {expected_gpus} expected")
    for gpu in sample.gpus:
        if limits.max_ecc_errors is not None and gpu.ecc_errors > limits.max_ecc_errors:
            problems.append(f"GPU {gpu.index} has {gpu.ecc_errors} uncorrected ECC errors")
        if limits.max_gpu_temperature is not None and gpu.temperature > limits.max_gpu_temperature:
            problems.append(
                f"GPU {gpu.index} at {gpu.temperature:.0f} C > {limits.max_gpu_temperature:.0f} C"
            )
    sample.problems, sample.healthy = problems, not problems
    return sample


def history_entry(history: list[dict[str, Any]], sample: HealthSample) -> list[dict[str, Any]]:
    """The last HISTORY samples, newest last."""
    return [*history, sample.as_dict()][-HISTORY:]


async def watch_health(
    session: HostSession,
    thresholds: HealthThresholds,
    history: list[dict[str, Any]],
    *,
    expected_gpus: int,
    interval: float,
) -> str:
    """Sample every `interval` seconds into `history` (in place) until unhealthy; returns the reason."""
    while session.alive and session.conn is not None:
        try:
            result = await session.conn.run(health_command(session.work_dir), timeout=30)
        except (OSError, asyncssh.Error):
            await asyncio.sleep(interval)
            continue
        sample = judge(parse_sample(str(result.stdout or "")), thresholds, expected_gpus=expected_gpus)
        history[:] = history_entry(history, sample)
        if not sample.healthy:
            return "unhealthy: " + "; ".join(sample.problems)
        await asyncio.sleep(interval)
    return session.lost or "the SSH connection ended"
