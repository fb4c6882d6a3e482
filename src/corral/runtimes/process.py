"""The process runtime: each job a bubblewrap sandbox in its own cgroup, killed as a whole tree."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

from corral.runtimes.base import MainRequest, MainResult, Runtime, RuntimeUnavailable, job_environment, now
from corral.runtimes.cgroups import Cgroups, JobCgroup, Limits, Usage, detect_cgroups
from corral.runtimes.registry import register
from corral.runtimes.sandbox import bwrap_argv, find_bwrap, root_layout, wrapped_argv
from corral.runtimes.supervise import kill_until_gone, sampling, wait_for_exit

log = logging.getLogger(__name__)

DEFAULT_PIDS_LIMIT = 4096
IMAGE_NOTE = (
    "image ignored: this worker runs jobs in the process sandbox on the host; workers started with "
    "--runtime oci run jobs in their image"
)


class _NoCgroup(JobCgroup):
    """Used where no cgroup is usable: no limits, kill by process group, no usage."""

    @property
    def procs_files(self) -> list[Path]:
        return []

    def pids(self) -> list[int]:
        return []

    def usage(self) -> Usage:
        return Usage()

    def oom_kills(self) -> int:
        return 0

    def remove(self) -> bool:
        return True


@register
class ProcessRuntime(Runtime):
    name = "process"
    pids_limit = DEFAULT_PIDS_LIMIT

    def __init__(self, *, instance_name: str, work_dir: Path) -> None:
        super().__init__(instance_name=instance_name, work_dir=work_dir)
        self.bwrap = ""
        self.cgroups: Cgroups | None = None
        self._cleanups: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self.bwrap = find_bwrap()
        probe = await asyncio.create_subprocess_exec(
            self.bwrap, *root_layout(), "--unshare-pid", "--die-with-parent", "--", "/bin/true",
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        _, err = await probe.communicate()
        if probe.returncode != 0:
            reason = err.decode(errors="replace").strip()
            raise RuntimeUnavailable(f"bubblewrap ({self.bwrap}) cannot create a sandbox here: {reason}")
        self.cgroups = await asyncio.to_thread(detect_cgroups, self.instance_name)
        if self.cgroups is not None:
            await asyncio.to_thread(self.cgroups.remove_stale)
            log.info("process runtime: bwrap %s, %s", self.bwrap, self.cgroups.describe())

    async def close(self) -> None:
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)
        if self.cgroups is not None:
            self.cgroups.remove_base()

    async def run(self, request: MainRequest, cancel: asyncio.Event) -> MainResult:
        start = now()
        note = IMAGE_NOTE if request.image else None
        if not self.bwrap:
            raise RuntimeError("ProcessRuntime.start() was not called")
        limits = Limits(request.memory_bytes, request.cores_mcpu, self.pids_limit)
        try:
            group = self.cgroups.create(request.key, limits) if self.cgroups else _NoCgroup()
        except OSError as exc:
            error = f"could not create the job's cgroup: {exc}"
            return MainResult("error", start, now(), error=error, note=note)
        try:
            return await self._run_in(group, request, cancel, start, note)
        finally:
            # Off the job's critical path: an emptied cgroup can stay busy for a few ms.
            task = asyncio.create_task(_remove(group))
            self._cleanups.add(task)
            task.add_done_callback(self._cleanups.discard)

    async def _run_in(
        self, group: JobCgroup, request: MainRequest, cancel: asyncio.Event, start: float, note: str | None
    ) -> MainResult:
        argv = wrapped_argv(self.bwrap, request, group.procs_files)
        try:
            with open(request.log_path, "ab") as out:
                proc = await asyncio.create_subprocess_exec(
                    *argv, env=job_environment(request), stdin=asyncio.subprocess.DEVNULL,
                    stdout=out, stderr=asyncio.subprocess.STDOUT, start_new_session=True,
                )
        except OSError as exc:
            return MainResult("error", start, now(), error=f"could not start the job: {exc}", note=note)
        try:
            outcome = await wait_for_exit(proc, cancel, request.timeout, sampling(group, request.usage_sink))
        finally:
            if proc.returncode is None:  # cancelled, timed out, or this task itself was cancelled
                await kill_until_gone(proc, group.kill, group.pids, "job")
        end = now()
        usage = group.usage()
        result = MainResult(
            "succeeded", start, end, max_memory_bytes=usage.max_memory_bytes,
            cpu_seconds=usage.cpu_seconds, note=note,
        )
        if outcome == "cancelled":
            result.state = "cancelled"
        elif outcome == "timeout":
            result.state, result.timed_out = "error", True
            result.error = f"timed out after {request.timeout:g}s"
        else:
            code = proc.returncode if proc.returncode is not None else -1
            result.exit_code = 128 - code if code < 0 else code  # killed by a signal: as a shell says
            if result.exit_code != 0:
                result.state = "failed"
                if group.oom_kills() > 0:
                    result.out_of_memory = True
                    result.error = (
                        f"out of memory: the job exceeded its memory limit of {request.memory_bytes} bytes"
                    )
        return result


async def _remove(group: JobCgroup) -> None:
    for attempt in range(200):
        try:
            if group.remove():
                return
        except OSError as exc:
            log.warning("could not remove a job cgroup: %s", exc)
            return
        group.kill()  # stragglers outlived the sandbox's first process
        await asyncio.sleep(0.002 if attempt < 20 else 0.02)
    log.warning("a job cgroup is still busy after 4 s; left in place")


__all__ = ["IMAGE_NOTE", "ProcessRuntime", "bwrap_argv"]
