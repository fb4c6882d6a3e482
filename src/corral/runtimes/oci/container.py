"""One `crun run` / `runc run` from start to result: wait, timeout, cancel kill, usage and OOM."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import signal
from pathlib import Path

from corral.runtimes.base import MainRequest, MainResult, now
from corral.runtimes.cgroups import (
    ContainerCgroups,
    JobCgroup,
    V1JobCgroup,
    V2Cgroups,
    V2JobCgroup,
    safe_name,
)
from corral.runtimes.logcap import CappedLog
from corral.runtimes.oci.engine import Engine
from corral.runtimes.supervise import kill_pids, kill_until_gone, sampling, wait_for_exit
from corral.runtimes.volume import no_space_left

log = logging.getLogger(__name__)
KILLED_BY_SIGKILL = 128 + signal.SIGKILL
MiB = 1024 * 1024


def _job_dirs(group: JobCgroup) -> list[Path]:
    if isinstance(group, V1JobCgroup):
        return list(dict.fromkeys(group.dirs.values()))
    if isinstance(group, V2JobCgroup):
        return [group.path]
    return []


def _read_int(path: Path) -> int:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 0


class ContainerRun:
    def __init__(
        self,
        engine: Engine,
        bundle: Path,
        container_id: str,
        group: JobCgroup,
        cgroups: ContainerCgroups,
        default_storage: int = 0,
    ) -> None:
        self.default_storage = default_storage  # /io's size when the job requested none
        self.engine = engine
        self.bundle = bundle
        self.container_id = container_id
        self.group = group
        self.cgroups = cgroups
        self.killed = False  # by us (cancel, timeout): not an OOM, and the state needs `delete --force`

    def pids(self) -> list[int]:
        """Every process in the job's cgroup and below (the container is in a child cgroup)."""
        found: set[int] = set()
        for top in _job_dirs(self.group):
            for root, _dirs, _files in os.walk(top):
                with contextlib.suppress(OSError, ValueError):
                    found.update(int(p) for p in Path(root, "cgroup.procs").read_text().split())
        return sorted(found)

    async def run(self, request: MainRequest, cancel: asyncio.Event, start: float) -> MainResult:
        argv = self.engine.run_argv(self.bundle, self.container_id)
        log = CappedLog(request.log_path)
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=log.open(), stderr=asyncio.subprocess.STDOUT,
                start_new_session=True,
            )
            log.child_started()
        except OSError as exc:
            await log.close()
            return MainResult("error", start, now(), error=f"could not start {self.engine.name}: {exc}")
        try:
            outcome = await wait_for_exit(
                proc, cancel, request.timeout, sampling(self.group, request.usage_sink)
            )
        finally:
            if proc.returncode is None:
                self.killed = True
                await kill_until_gone(proc, lambda: kill_pids(self.pids()), self.pids, "container")
            await log.close()
        usage = self.group.usage()
        result = MainResult(
            "succeeded", start, now(), max_memory_bytes=usage.max_memory_bytes, cpu_seconds=usage.cpu_seconds
        )
        if outcome == "cancelled":
            result.state = "cancelled"
        elif outcome == "timeout":
            result.state, result.timed_out = "error", True
            result.error = f"timed out after {request.timeout:g}s"
        else:
            code = proc.returncode if proc.returncode is not None else -1
            result.exit_code = 128 - code if code < 0 else code
            if result.exit_code != 0:
                result.state = "failed"
                result.error = no_space_left(request.io_dir, request.storage_bytes, self.default_storage)
                if self._out_of_memory(result.exit_code):
                    result.out_of_memory = True
                    result.error = (
                        f"out of memory: the job exceeded its memory limit of {request.memory_bytes} bytes"
                    )
        return result

    def _out_of_memory(self, exit_code: int) -> bool:
        if self.group.oom_kills() > 0:  # v2 counts the child's kills in the job's memory.events
            return True
        # v1 counts an OOM kill only in the victim's (the container's, now removed) cgroup; the job's
        # cgroup holds the limit: the limit hit there, then a SIGKILL we did not send, is the OOM killer.
        if isinstance(self.group, V1JobCgroup) and "memory" in self.group.dirs:
            mem = self.group.dirs["memory"]
            # failcnt is not kept on every kernel: a peak at the limit says the same.
            hits = _read_int(mem / "memory.failcnt") + _read_int(mem / "memory.memsw.failcnt")
            limit = _read_int(mem / "memory.limit_in_bytes")
            at_limit = _read_int(mem / "memory.max_usage_in_bytes") >= limit - MiB
            return exit_code == KILLED_BY_SIGKILL and (hits > 0 or at_limit)
        return False


async def remove_job_cgroups(cgroups: ContainerCgroups, key: str) -> None:
    """rmdir the job's cgroup (and the container's child, if the runtime left it) in every hierarchy."""
    if isinstance(cgroups.cgroups, V2Cgroups):
        tops = [cgroups.cgroups.base / safe_name(key)]
    else:
        tops = [p / cgroups.relative.lstrip("/") / safe_name(key) for p in cgroups.hierarchies]
    pending = [d for top in tops for d in (top / "ctr", top)]
    for attempt in range(200):
        left = []
        for d in pending:
            try:
                d.rmdir()
            except FileNotFoundError:
                pass
            except OSError as exc:
                if exc.errno not in (errno.EBUSY, errno.ENOTEMPTY):
                    log.warning("could not remove cgroup %s: %s", d, exc)
                    continue
                left.append(d)
        if not left:
            return
        pending = left
        await asyncio.sleep(0.002 if attempt < 20 else 0.02)
    log.warning("job cgroups still busy after 4 s; left in place: %s", pending)
