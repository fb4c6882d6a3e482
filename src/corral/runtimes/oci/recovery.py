"""What a worker that died mid-job left behind, cleared when its successor starts: containers still
running in its job cgroups, their runtime state, and mounts (overlay roots, /io volumes) in its scratch
and its user-namespace stage (/run/corral-oci/<instance>)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
from pathlib import Path

from corral.runtimes.cgroups import ContainerCgroups, V1Cgroups, V2Cgroups
from corral.runtimes.oci.container import remove_job_cgroups
from corral.runtimes.oci.engine import Engine
from corral.runtimes.oci.mounts import unmount

log = logging.getLogger(__name__)


def _job_tops(cgroups: ContainerCgroups) -> list[Path]:
    if isinstance(cgroups.cgroups, V2Cgroups):
        return [cgroups.cgroups.base]
    if isinstance(cgroups.cgroups, V1Cgroups):
        return list(dict.fromkeys(cgroups.cgroups.bases.values()))
    return []


def _kill_stale(cgroups: ContainerCgroups) -> list[str]:
    """SIGKILL every process in a job cgroup of this instance; returns the job cgroups' names."""
    names: set[str] = set()
    for top in _job_tops(cgroups):
        for job in (p for p in top.iterdir() if p.is_dir()) if top.is_dir() else []:
            names.add(job.name)
            for root, _dirs, _files in os.walk(job):
                with contextlib.suppress(OSError, ValueError):
                    for pid in Path(root, "cgroup.procs").read_text().split():
                        with contextlib.suppress(ProcessLookupError, PermissionError):
                            os.kill(int(pid), signal.SIGKILL)
    return sorted(names)


def _mounts_under(directory: Path) -> list[Path]:
    prefix = str(directory.resolve()).rstrip("/") + "/"
    points = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                points.append(Path(point))
    return sorted(points, key=lambda p: len(p.parts), reverse=True)  # innermost first


async def recover(
    engine: Engine, cgroups: ContainerCgroups, work_dir: Path, stage: Path | None = None
) -> None:
    stale = await asyncio.to_thread(_kill_stale, cgroups)
    for name in stale:
        await remove_job_cgroups(cgroups, name)
    for container in (p.name for p in engine.state_dir.iterdir()) if engine.state_dir.is_dir() else []:
        proc = await asyncio.create_subprocess_exec(
            *engine.delete_argv(container), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        await proc.wait()
    for top in (stage, work_dir) if stage is not None else (work_dir,):  # binds in the stage first
        for point in _mounts_under(top):
            with contextlib.suppress(OSError):
                unmount(point)
    if stage is not None:
        shutil.rmtree(stage, ignore_errors=True)
    if stale:
        log.warning("oci runtime: cleared %d jobs a previous run of this worker left running", len(stale))
