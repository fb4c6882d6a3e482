"""The process runtime: each job a bubblewrap sandbox in its own cgroup, killed as a whole tree.

The job runs as an unprivileged uid of its own (root worker) or the worker's user in a user namespace,
with no capabilities, no_new_privs and a seccomp filter; CORRAL_HOME and the worker's files are hidden;
its network is none, private (NAT, no host loopback) or, where the site allows it, the host's.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

from corral.config import Settings
from corral.runtimes.base import MainRequest, MainResult, Runtime, RuntimeUnavailable, job_environment, now
from corral.runtimes.cgroup_pool import KEEP_IDLE, CgroupPool
from corral.runtimes.cgroups import (
    Cgroups,
    JobCgroup,
    Limits,
    ThreadEntry,
    Usage,
    detect_cgroups,
    record_cgroups,
)
from corral.runtimes.config import JobsConfig
from corral.runtimes.default_storage import DefaultVolumes
from corral.runtimes.identity import JobUser, JobUsers, give_to
from corral.runtimes.logcap import CappedLog
from corral.runtimes.network import (
    NetworkError,
    NetworkPool,
    PrivateNetwork,
    find_slirp,
    plumbing,
    resolv_conf,
)
from corral.runtimes.registry import register
from corral.runtimes.sandbox import (
    SandboxView,
    bwrap_argv,
    find_bwrap,
    find_setpriv,
    root_layout,
)
from corral.runtimes.seccomp import build_filter, open_filter
from corral.runtimes.spawn import JobProcess, SandboxGate, spawn
from corral.runtimes.supervise import kill_until_gone, sampling, wait_for_exit
from corral.runtimes.volume import mount_io_volume, no_space_left, unmount_io_volume, volume_file

log = logging.getLogger(__name__)

DEFAULT_PIDS_LIMIT = 4096
ROOTLESS_PRIVATE_NETWORK = (
    "network 'private' needs a worker running as root (it makes the job's network namespace); this "
    "worker is not root: ask for network 'none', or 'public' where the site allows the host's network"
)
ROOTLESS_DEFAULT_NETWORK = (
    "a worker that is not root cannot give jobs the site's default network 'private' (network "
    "namespaces need root): run it as root, or set [jobs] default_network = \"none\" for its site"
)
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
    image_note = IMAGE_NOTE
    # Where a thread can join the job's cgroups alone (v1), bwrap is born in them; False: always the gate.
    born_in_cgroups = True

    def __init__(self, *, instance_name: str, work_dir: Path, settings: Settings | None = None) -> None:
        super().__init__(instance_name=instance_name, work_dir=work_dir)
        self.settings = settings
        self.jobs = JobsConfig()  # read from the settings at start
        self.bwrap = ""
        self.setpriv = ""
        self.cgroups: Cgroups | None = None
        self._cgroup_pool: CgroupPool | None = None
        self._evicting: asyncio.TimerHandle | None = None
        self.users = JobUsers(instance_name)
        self.view = SandboxView()
        self.seccomp = work_dir / "seccomp.bpf"
        self.user_path: str | None = None  # the user's PATH, kept on the embedded default
        self.networks = NetworkPool(work_dir)
        self.default_volumes: DefaultVolumes | None = None  # [jobs] default_storage (root workers)
        self._cleanups: set[asyncio.Task[None]] = set()
        self._started = False

    async def start(self) -> None:
        settings = self.settings or Settings()
        self.jobs = settings.jobs
        self.bwrap = find_bwrap()
        if self.users.privileged:
            self.setpriv = find_setpriv()
        try:
            await asyncio.to_thread(build_filter, self.seccomp)
        except (OSError, ImportError) as exc:
            raise RuntimeUnavailable(f"cannot build the jobs' seccomp filter (libseccomp2, pyseccomp): {exc}"
                                     ) from exc
        if self.jobs.default_network != "none" or not self.jobs.host_network:
            try:
                find_slirp()
            except NetworkError as exc:
                raise RuntimeUnavailable(exc.message) from None
        if not self.users.privileged and self.network_of(None) == "nat":
            raise RuntimeUnavailable(ROOTLESS_DEFAULT_NETWORK)
        self.view = SandboxView.build(
            _secrets(settings, self.work_dir), self._shared_paths(), job_has_own_uid=self.users.privileged
        )
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
            await asyncio.to_thread(record_cgroups, self.work_dir, self.cgroups.paths())
            await asyncio.to_thread(self.cgroups.remove_stale)
            log.info("process runtime: bwrap %s, %s", self.bwrap, self.cgroups.describe())
        if self.jobs.default_storage > 0 and self.users.privileged:
            self.default_volumes = DefaultVolumes(self.work_dir / "volumes", self.jobs.default_storage)
            await self.default_volumes.warm()
        self._started = True

    def job_user(self, key: str) -> JobUser | None:
        return self.users.acquire(key)

    async def prepare_io(self, volume: Path, storage_bytes: int) -> None:
        if storage_bytes > 0:
            volume.mkdir(exist_ok=True)
            await mount_io_volume(volume, storage_bytes)
        elif self.default_volumes is not None:
            await self.default_volumes.lend(volume)

    async def release_io(self, volume: Path) -> None:
        if self.default_volumes is not None and self.default_volumes.lent(volume):
            self.default_volumes.give_back(volume)
        elif volume_file(volume).exists():  # one stat inline: most jobs ask no storage, so have no volume
            await asyncio.to_thread(unmount_io_volume, volume)

    @property
    def default_storage(self) -> int:
        """The size of /io and /tmp for jobs that request no storage (0: unbounded)."""
        return self.default_volumes.size if self.default_volumes is not None else 0

    def release_job_user(self, key: str) -> None:
        self.users.release(key)

    async def close(self) -> None:
        if self._cleanups:
            await asyncio.gather(*self._cleanups, return_exceptions=True)
        await self.networks.close()
        if self.default_volumes is not None:
            await self.default_volumes.close()
        if self._evicting is not None:
            self._evicting.cancel()
            self._evicting = None
        if self._cgroup_pool is not None:
            self._cgroup_pool.close()
        if self.cgroups is not None:
            self.cgroups.remove_base()

    def network_of(self, mode: str | None) -> str:
        return plumbing(mode, default=self.jobs.default_network, host_network=self.jobs.host_network)

    async def run(self, request: MainRequest, cancel: asyncio.Event) -> MainResult:
        start = now()
        note = self.image_note if request.image else None
        if not self._started:
            raise RuntimeError(f"{type(self).__name__}.start() was not called")
        limits = Limits(request.memory_bytes, request.cores_mcpu, self.pids_limit)
        pool = self.cgroup_pool
        try:
            group = pool.take(request.key, limits) if pool is not None else _NoCgroup()
        except OSError as exc:
            error = f"could not create the job's cgroup: {exc}"
            return MainResult("error", start, now(), error=error, note=note)
        try:
            return await self._run_in(group, request, cancel, start, note)
        finally:
            self.release_later(group)

    def release_later(self, group: JobCgroup) -> None:
        """The job's cgroup back to the pool once its processes are gone, off the job's critical path (an
        emptied cgroup can stay busy for a few ms); close() waits for it."""
        if self._cgroup_pool is not None and not isinstance(group, _NoCgroup):
            task = asyncio.create_task(_release(self._cgroup_pool, group))
            self._cleanups.add(task)
            task.add_done_callback(self._cleanups.discard)
            if self._evicting is None:
                self._evict_later()

    def _evict_later(self) -> None:
        """Idle kept cgroups removed once idle KEEP_IDLE seconds, checked while any are kept."""
        def evict() -> None:
            self._evicting = None
            if self._cgroup_pool is not None and self._cgroup_pool.evict_idle(KEEP_IDLE):
                self._evict_later()

        self._evicting = asyncio.get_running_loop().call_later(KEEP_IDLE, evict)

    @property
    def cgroup_pool(self) -> CgroupPool | None:
        """Where jobs' cgroups come from and go back to (reused on v1: cgroup_pool.py); None: no cgroups."""
        if self._cgroup_pool is None and self.cgroups is not None:
            self._cgroup_pool = CgroupPool(self.cgroups)
        return self._cgroup_pool

    def _shared_paths(self) -> list[Path]:
        """Host paths jobs see read-only: the worker's Python, the site's, the user's environment."""
        interpreter = Path(os.path.realpath(sys.executable)).parent.parent
        paths = [Path(sys.prefix), Path(sys.base_prefix), interpreter]
        paths += self.jobs.visible_paths
        if self.jobs.share_user_environment and os.environ.get("CORRAL_SHARE_USER_ENV") == "1":
            for name in ("VIRTUAL_ENV", "CONDA_PREFIX"):
                if os.environ.get(name):
                    paths.append(Path(os.environ[name]))
            paths.append(Path.cwd())
            self.user_path = os.environ.get("PATH")
        return paths

    def _environment(self, request: MainRequest) -> dict[str, str]:
        env = job_environment(request)
        if self.user_path and "PATH" not in request.env:
            env["PATH"] = self.user_path
            for name in ("VIRTUAL_ENV", "CONDA_PREFIX", "CONDA_DEFAULT_ENV"):
                if name in os.environ and name not in request.env:
                    env[name] = os.environ[name]
        return env

    async def _run_in(
        self, group: JobCgroup, request: MainRequest, cancel: asyncio.Event, start: float, note: str | None
    ) -> MainResult:
        user = self.users.acquire(request.key)
        try:
            return await self._run_as(user, group, request, cancel, start, note)
        finally:
            self.users.release(request.key)

    async def _spawn(
        self, user: JobUser | None, group: JobCgroup, request: MainRequest, log: CappedLog
    ) -> tuple[JobProcess, PrivateNetwork | None]:
        """Start the job's sandbox in its cgroup; OSError, NetworkError or ValueError if it cannot start."""
        jobs = self.jobs
        net = plumbing(request.network, default=jobs.default_network, host_network=jobs.host_network)
        extra: list[str] = []
        network: PrivateNetwork | None = None
        seccomp_fd = -1
        try:
            if user is not None:
                if _empty(request.io_dir) and _empty(request.tmp_dir):  # no inputs: two chowns, inline
                    give_to(user, request.io_dir, request.tmp_dir)
                else:
                    await asyncio.to_thread(give_to, user, request.io_dir, request.tmp_dir, recursive=True)
            seccomp_fd = open_filter(self.seccomp)
            netns: Path | None = None
            if net == "nat":
                if not self.users.privileged:
                    raise NetworkError(ROOTLESS_PRIVATE_NETWORK)
                network = await self.networks.take(request.published_ports)
                netns = network.path  # the spawner enters it; bwrap keeps the namespace it starts in
                extra += ["--ro-bind", str(resolv_conf(request.scratch)), "/etc/resolv.conf"]
            sandbox = bwrap_argv(
                self.bwrap, request, view=self.view, user=user, setpriv=self.setpriv, seccomp_fd=seccomp_fd,
                unshare_net=net == "none", extra=extra,
            )
            entry, gate = self.sandbox_entry(group)
            try:
                if gate is not None:
                    sandbox[1:1] = gate.args()
                proc = await spawn(
                    sandbox, env=self._environment(request), stdout=log.open(), pass_fds=[seccomp_fd],
                    gate=gate, netns=netns, cgroups=entry,
                )
            finally:
                if gate is not None:
                    gate.close()
            return proc, network
        except BaseException:
            if network is not None:
                self.networks.give_back(network)
            raise
        finally:
            if seccomp_fd >= 0:
                os.close(seccomp_fd)

    def sandbox_entry(self, group: JobCgroup) -> tuple[ThreadEntry | None, SandboxGate | None]:
        """How a sandbox gets into the job's cgroups before the job's first instruction. v1: the starting
        thread joins them alone and starts bwrap in them (no process is moved, which costs an RCU grace
        period after a pause: spawn.CURRENT_THREAD). Elsewhere (v2) bwrap waits at a gate, before the
        job's first process, until the worker has moved it and the sandbox's first process into them.
        The caller puts the gate's args in bwrap's command line and closes it."""
        entry = group.thread_entry if self.born_in_cgroups else None
        gate = SandboxGate(group.procs_files) if entry is None and group.procs_files else None
        return entry, gate

    async def _run_as(
        self, user: JobUser | None, group: JobCgroup, request: MainRequest, cancel: asyncio.Event,
        start: float, note: str | None,
    ) -> MainResult:
        log = CappedLog(request.log_path)
        try:
            proc, network = await self._spawn(user, group, request, log)
            log.child_started()
        except (OSError, NetworkError, ValueError) as exc:
            await log.close()
            return MainResult("error", start, now(), error=f"could not start the job: {exc}", note=note)
        try:
            outcome = await wait_for_exit(proc, cancel, request.timeout, sampling(group, request.usage_sink))
        finally:
            if proc.returncode is None:  # cancelled, timed out, or this task itself was cancelled
                await kill_until_gone(proc, group.kill, group.pids, "job")
            if network is not None:  # the sandbox's pid namespace is gone: nothing of the job is left in it
                self.networks.give_back(network)
            await log.close()
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
            lost: str | None = getattr(proc, "lost", None)  # the host runtime's spawner died
            if lost is not None:
                result.state, result.error = "error", lost
            elif result.exit_code != 0:
                result.state = "failed"
                result.error = no_space_left(request.io_dir, request.storage_bytes, self.default_storage)
                if group.oom_kills() > 0:
                    result.out_of_memory = True
                    result.error = (
                        f"out of memory: the job exceeded its memory limit of {request.memory_bytes} bytes"
                    )
        return result


def _secrets(settings: Settings, work_dir: Path) -> list[Path]:
    """Never visible inside a job: the store, tokens and TLS keys, every job's scratch, SSH keys."""
    found = [settings.home, work_dir, Path.home() / ".ssh", Path.home() / ".corral"]
    if settings.hail_compat_dir is not None:
        found.append(settings.hail_compat_dir)
    if settings.images.cache_dir is not None:
        found.append(settings.images.cache_dir)
    return found


def _empty(path: Path) -> bool:
    with os.scandir(path) as entries:
        return next(entries, None) is None


async def _release(pool: CgroupPool, group: JobCgroup) -> None:
    """Once its job's processes are all gone: the cgroup back to the pool (kept, or removed)."""
    for attempt in range(200):
        try:
            if pool.give_back(group):
                return
        except OSError as exc:
            log.warning("could not remove a job cgroup: %s", exc)
            return
        group.kill()  # stragglers outlived the sandbox's first process
        await asyncio.sleep(0.002 if attempt < 20 else 0.02)
    log.warning("a job cgroup is still busy after 4 s; left in place")


__all__ = ["IMAGE_NOTE", "ProcessRuntime", "bwrap_argv"]
