"""The host runtime: each job a plain process tree in its own cgroup, no sandbox. Trusted setups only.

What it keeps from the process runtime: the job's memory, cpu and pids limits (its cgroup: the job's
first process is born in it on cgroup v1, a shell joins it and execs the job on v2; either way the
limits hold before the job's first instruction), OOM and
timeout detection, usage, and kill-the-tree on cancel, timeout or worker exit (the cgroup and the
job's session). What it drops: the mount, pid, network and user namespaces, the job's own uid and the
seccomp filter. A job runs as the worker's user, sees and may write the whole host (CORRAL_HOME and
the store included), shares the host's network, and finds its files in its working directory
($CORRAL_IO_DIR), not at /io. Refused unless the site sets `[jobs] allow_host_runtime = true`.
"""

from __future__ import annotations

import asyncio
from typing import Any

from corral.config import Settings
from corral.runtimes.base import MainRequest, MainResult, RuntimeUnavailable, without_rc_files
from corral.runtimes.cgroups import JobCgroup, detect_cgroups, record_cgroups
from corral.runtimes.config import HOST_REFUSED
from corral.runtimes.identity import JobUser
from corral.runtimes.logcap import CappedLog
from corral.runtimes.network import PrivateNetwork
from corral.runtimes.process import ProcessRuntime
from corral.runtimes.registry import register
from corral.runtimes.sandbox import wrapped_argv
from corral.runtimes.spawn import JobProcess
from corral.runtimes.spawner import JobSpawner

NETWORK_NOTE = "network {mode!r} not enforced: the host runtime shares the host's network"


@register
class HostRuntime(ProcessRuntime):
    name = "host"
    quick_starts = True
    reuses_scratch = True
    image_note = "image ignored: this worker runs jobs unsandboxed on the host (--runtime host)"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.spawner = JobSpawner()

    async def start(self) -> None:
        settings = self.settings or Settings()
        self.jobs = settings.jobs
        if not self.jobs.allow_host_runtime:
            raise RuntimeUnavailable(HOST_REFUSED)
        self._shared_paths()  # the user's PATH on the embedded default, as the process runtime keeps it
        self.cgroups = await asyncio.to_thread(detect_cgroups, self.instance_name)
        if self.cgroups is not None:
            await asyncio.to_thread(record_cgroups, self.work_dir, self.cgroups.paths())
            await asyncio.to_thread(self.cgroups.remove_stale)
        self._started = True

    def network_of(self, mode: str | None) -> str:
        return "host"  # jobs share the host's network, whatever they ask

    def job_user(self, key: str) -> JobUser | None:
        return None  # the worker's own user

    def release_job_user(self, key: str) -> None:
        pass

    async def _run_in(
        self, group: JobCgroup, request: MainRequest, cancel: asyncio.Event, start: float, note: str | None
    ) -> MainResult:
        if request.network not in (None, "public"):
            extra = NETWORK_NOTE.format(mode=request.network)
            note = f"{note}; {extra}" if note else extra
        return await self._run_as(None, group, request, cancel, start, note)

    async def _spawn(
        self, user: JobUser | None, group: JobCgroup, request: MainRequest, log: CappedLog
    ) -> tuple[JobProcess, PrivateNetwork | None]:
        env = self._environment(request)
        env.update({"HOME": str(request.tmp_dir), "TMPDIR": str(request.tmp_dir),
                    "CORRAL_IO_DIR": str(request.io_dir)})
        env.update(request.env)  # the job's own values still win
        command = without_rc_files(request.command)
        entry = group.thread_entry
        if entry is not None:  # v1: the spawner joins the cgroups while it starts the job
            proc = await self.spawner.spawn(command, env=env, cwd=request.io_dir, stdout=log.open(),
                                            enter=entry.enter, home=entry.home)
        else:
            # v2: a shell joins the cgroups and execs the job (a process cannot join a v2 cgroup alone).
            argv = wrapped_argv(command, group.procs_files)
            proc = await self.spawner.spawn(argv, env=env, cwd=request.io_dir, stdout=log.open())
        return proc, None

    async def close(self) -> None:
        await super().close()
        await self.spawner.close()


__all__ = ["HostRuntime"]
