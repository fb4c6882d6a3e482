"""One cgroup per job, under this worker's own cgroup: memory, cpu and pids limits, usage, OOM, kill.

Both layouts are supported and detected at start: cgroup v1 (a hierarchy per controller, e.g.
/sys/fs/cgroup/memory) and cgroup v2 (one unified hierarchy with cgroup.controllers). A machine
with controllers bound to v1 and an empty v2 mount (hybrid) uses v1.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import re
import signal
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

V1_CONTROLLERS = ("memory", "cpu", "cpuacct", "pids")
V2_CONTROLLERS = ("memory", "cpu", "pids")
CPU_PERIOD_US = 100_000  # the kernel's default period: a quota is a share of it
MIN_CPU_QUOTA_US = 1_000
NO_MEMORY_LIMIT = 0x7FFFFFFFFFFFF000  # what cgroup v1's memory.limit_in_bytes reads with none set
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")  # v1 memory limits read back in whole pages


@dataclass(frozen=True)
class Limits:
    memory_bytes: int = 0  # 0: none
    cores_mcpu: int = 0  # 0: none
    pids: int = 0  # 0: none


@dataclass(frozen=True)
class Usage:
    max_memory_bytes: int = 0
    cpu_seconds: float = 0.0


def cpu_quota_us(cores_mcpu: int, period_us: int = CPU_PERIOD_US) -> int:
    return max(MIN_CPU_QUOTA_US, cores_mcpu * period_us // 1000)


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def safe_name(name: str) -> str:
    return _UNSAFE.sub("_", name)[:120] or "_"


# Plain fds, not Python file objects: a job's cgroup is written and read a dozen times, and open()'s
# buffering, tty check and seek cost more system calls than the read or write itself.
def _read(path: str | Path) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while chunk := os.read(fd, 65536):
            chunks.append(chunk)
    finally:
        os.close(fd)
    return b"".join(chunks).decode()


def write_file(path: str | Path, value: str | bytes) -> None:
    """One write to a cgroup file (a kernel interface: one write is one command)."""
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, value.encode() if isinstance(value, str) else value)
    finally:
        os.close(fd)


def _read_int(path: str | Path, default: int = 0) -> int:
    try:
        return int(_read(path).split()[0])
    except (OSError, ValueError, IndexError):
        return default


def _v1_oom_kills(mem: str | Path, unknown: int = 0) -> int:
    """OOM kills in a v1 memory cgroup: its oom_kill count; before Linux 4.13, which has none, 1 if the
    limit was ever hit (the fail count, the best hint there), or `unknown` if that cannot be read."""
    control = _keyed(f"{mem}/memory.oom_control")
    if "oom_kill" in control:
        return control["oom_kill"]
    failcnt = _read_int(f"{mem}/memory.failcnt", -1)
    return unknown if failcnt < 0 else min(failcnt, 1)


def _keyed(path: str | Path) -> dict[str, int]:
    """'key value' lines (memory.events, cpu.stat, memory.oom_control) -> dict."""
    out: dict[str, int] = {}
    with contextlib.suppress(OSError):
        for line in _read(path).splitlines():
            parts = line.split()
            if len(parts) == 2 and parts[1].lstrip("-").isdigit():
                out[parts[0]] = int(parts[1])
    return out


_SPARED: set[int] = set()  # the worker's own helper processes (its job spawner): never a job's


def spare(pid: int) -> None:
    """From now on, a job cgroup's pids never include `pid` (so a kill never hits it): on v1 a thread of
    the job spawner sits in a job's cgroups while it starts the job (ThreadEntry), and cgroup.procs then
    lists the spawner's pid; a job cancelled in that moment must not take the spawner with it."""
    _SPARED.add(pid)


def unspare(pid: int) -> None:
    """`pid` ended (its number may be reused): a job cgroup's pids list it again."""
    _SPARED.discard(pid)


def _pids(procs_file: str | Path) -> list[int]:
    """The processes in a cgroup, never this worker or a process it spares (see spare)."""
    try:
        me = os.getpid()
        return [pid for pid in map(int, _read(procs_file).split()) if pid != me and pid not in _SPARED]
    except (OSError, ValueError):
        return []


def join_cgroups(procs_files: list[Path], pids: list[int]) -> None:
    """Move each process into every one of the job's cgroups (OSError if one cannot be joined)."""
    for procs in procs_files:
        for pid in pids:
            write_file(procs, str(pid))


def _kill_pids(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


@dataclass(frozen=True)
class ThreadEntry:
    """cgroup v1 lets one thread join a cgroup alone (its tid into `tasks`): a spawner thread joins the
    job's cgroups, starts the job's first process (born in them, so every limit holds before its first
    instruction, with no shell in between), and goes back `home`, to the worker's own cgroups."""

    enter: tuple[str, ...]  # `tasks` files
    home: tuple[str, ...]


class JobCgroup(ABC):
    """A job's cgroup: the job's first process is born in it (thread_entry), or is moved into it (its
    pid into every `procs_files`) before it runs anything of the job."""

    @property
    @abstractmethod
    def procs_files(self) -> list[Path]: ...

    @property
    def thread_entry(self) -> ThreadEntry | None:
        """How a thread joins the cgroup alone to start the job in it; None where a thread cannot."""
        return None

    @abstractmethod
    def pids(self) -> list[int]: ...

    def kill(self) -> None:
        _kill_pids(self.pids())

    @abstractmethod
    def usage(self) -> Usage: ...

    @abstractmethod
    def oom_kills(self) -> int: ...

    def sample(self) -> None:  # noqa: B027 - optional hook
        """Called periodically while the job runs (for layouts without a memory high-water mark)."""

    def memory_now(self) -> int:
        """Memory the job uses now (the usage plot); the high-water mark where the layout has no better."""
        return self.usage().max_memory_bytes

    @abstractmethod
    def remove(self) -> bool:
        """rmdir the cgroup; False while processes are still in it."""


class Cgroups(ABC):
    """Where this worker's job cgroups live."""

    version: int

    @abstractmethod
    def create(self, name: str, limits: Limits) -> JobCgroup: ...

    @abstractmethod
    def remove_stale(self) -> None:
        """Remove job cgroups a previous run of this worker left behind."""

    @abstractmethod
    def remove_base(self) -> None:
        """Remove this worker's (empty) parent cgroups when it stops."""

    def describe(self) -> str:
        return f"cgroup v{self.version}"

    @abstractmethod
    def paths(self) -> list[Path]:
        """This worker's parent cgroups (one per hierarchy)."""


RECORD = "cgroups"  # in the work dir: where a dead worker's job cgroups are (worker/cleanup.py reads it)


def record_cgroups(work_dir: Path, paths: list[Path]) -> None:
    """Remember (appending) where this worker's job cgroups live, for whoever cleans up after it."""
    work_dir.mkdir(parents=True, exist_ok=True)
    with open(work_dir / RECORD, "a") as f:
        f.writelines(f"{p}\n" for p in paths)


def _rmdir(path: str | Path) -> bool:
    try:
        os.rmdir(path)
    except FileNotFoundError:
        return True
    except OSError as exc:
        if exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
            return False
        raise
    return True


# ----------------------------------------------------------------------------- v1


@dataclass(frozen=True, slots=True)
class _V1Files:
    """A v1 job cgroup's control files, worked out once per name (made, renamed): a job's start and end
    open ~20 of them, and joining and formatting a Path for each cost more CPU than the kernel's open
    and read of it."""

    dirs: tuple[str, ...]  # one per hierarchy (cpu and cpuacct may share one)
    procs: tuple[str, ...]
    tasks: tuple[str, ...]
    memory: str | None  # the memory directory, for the OOM helpers
    mem_limit: str | None
    mem_usage: str | None
    mem_peak: str | None
    cpu_usage: str | None  # cpuacct.usage
    cpu_quota: str | None
    cpu_period: str | None
    pids_max: str | None


def _v1_files(dirs: dict[str, str]) -> _V1Files:
    def file(controller: str, name: str) -> str | None:
        d = dirs.get(controller)
        return None if d is None else f"{d}/{name}"

    unique = tuple(dict.fromkeys(dirs.values()))
    return _V1Files(
        dirs=unique,
        procs=tuple(f"{d}/cgroup.procs" for d in unique),
        tasks=tuple(f"{d}/tasks" for d in unique),
        memory=dirs.get("memory"),
        mem_limit=file("memory", "memory.limit_in_bytes"),
        mem_usage=file("memory", "memory.usage_in_bytes"),
        mem_peak=file("memory", "memory.max_usage_in_bytes"),
        cpu_usage=file("cpuacct", "cpuacct.usage"),
        cpu_quota=file("cpu", "cpu.cfs_quota_us"),
        cpu_period=file("cpu", "cpu.cfs_period_us"),
        pids_max=file("pids", "pids.max"),
    )


class V1JobCgroup(JobCgroup):
    def __init__(
        self, dirs: dict[str, Path], homes: tuple[Path, ...] = (), limits: Limits | None = None
    ) -> None:
        # Plain strings inside: a job's start and end work them out and rename them, and Path's joins and
        # formatting cost more CPU than the kernel's part (bench.cpu_per_job's worker profile).
        self._paths = {controller: str(d) for controller, d in dirs.items()}
        self._files = _v1_files(self._paths)
        self.homes = homes  # the worker's own cgroups, one per hierarchy (the bases' parents)
        self._home_tasks = tuple(f"{h}/tasks" for h in homes)
        self.limits = limits  # as made (V1Cgroups.create): what a next job must ask to reuse it

    @property
    def dirs(self) -> dict[str, Path]:
        """Its directory in each hierarchy, by controller (changed only by `rename`)."""
        return {controller: Path(d) for controller, d in self._paths.items()}

    @property
    def procs_files(self) -> list[Path]:
        return [Path(p) for p in self._files.procs]

    @property
    def thread_entry(self) -> ThreadEntry | None:
        if not self.homes:
            return None
        return ThreadEntry(self._files.tasks, self._home_tasks)

    def pids(self) -> list[int]:
        seen: set[int] = set()
        for f in self._files.procs:
            seen.update(_pids(f))
        return sorted(seen)

    def usage(self) -> Usage:
        f = self._files
        return Usage(
            max_memory_bytes=_read_int(f.mem_peak) if f.mem_peak else 0,
            cpu_seconds=_read_int(f.cpu_usage) / 1e9 if f.cpu_usage else 0.0,
        )

    def memory_now(self) -> int:
        return _read_int(self._files.mem_usage) if self._files.mem_usage else 0

    def oom_kills(self) -> int:
        mem = self._files.memory
        return 0 if mem is None else _v1_oom_kills(mem)

    def remove(self) -> bool:
        return all([_rmdir(d) for d in self._files.dirs])

    def clean_after_job(self) -> bool:
        """Once its job's processes are gone: whether nothing of the job stays with the cgroup (its
        limits as made, no OOM kill, at most RESET_SLACK still charged), its CPU time zeroed if so.
        False: the cgroup is not fit for another job (cgroup_pool.py removes it)."""
        f = self._files
        if self.limits is None or not self._limits_hold(self.limits):
            return False  # changed from inside (a host-runtime job runs as the worker's user)
        if f.memory is not None and f.mem_usage is not None:
            if _v1_oom_kills(f.memory, unknown=1):
                return False  # the OOM kill count cannot be reset: the next job would inherit it
            if not 0 <= _read_int(f.mem_usage, -1) <= RESET_SLACK:
                return False  # page cache, tmpfs or kernel memory of the job still charged to it
        if f.cpu_usage is not None:
            write_file(f.cpu_usage, "0")
        return True

    def _limits_hold(self, limits: Limits) -> bool:
        """Whether its limit files still read what create() wrote (or the kernel's none)."""
        f = self._files
        if f.mem_limit is not None:
            want = (limits.memory_bytes if limits.memory_bytes > 0 else NO_MEMORY_LIMIT) // PAGE_SIZE
            if _read_int(f.mem_limit, -1) // PAGE_SIZE != want:
                return False
        if f.cpu_quota is not None and f.cpu_period is not None:
            quota = cpu_quota_us(limits.cores_mcpu) if limits.cores_mcpu > 0 else -1
            period = _read_int(f.cpu_period)
            if _read_int(f.cpu_quota, 0) != quota or period != CPU_PERIOD_US:
                return False
        if f.pids_max is not None:
            with contextlib.suppress(OSError):
                return _read(f.pids_max).strip() == (str(limits.pids) if limits.pids > 0 else "max")
            return False
        return True

    def restart_peak(self) -> None:
        """The peak memory counts from now (the next job's, from what little is charged: RESET_SLACK)."""
        if self._files.mem_peak is not None:
            write_file(self._files.mem_peak, "0")

    @property
    def name(self) -> str:
        return self._files.dirs[0].rpartition("/")[2]

    def rename(self, name: str) -> None:
        """Each of its directories takes `name` (v1 renames within the parent; OSError if taken, and then
        every hierarchy keeps the old name)."""
        safe = safe_name(name)
        moved = {d: f"{d.rpartition('/')[0]}/{safe}" for d in self._files.dirs}
        done: list[tuple[str, str]] = []
        try:
            for old, new in moved.items():
                if old != new:
                    os.rename(old, new)
                    done.append((old, new))
        except OSError:
            for old, new in reversed(done):
                with contextlib.suppress(OSError):
                    os.rename(new, old)
            raise
        self._paths = {c: moved[d] for c, d in self._paths.items()}
        self._files = _v1_files(self._paths)


# What an emptied job cgroup may still have charged and be given to another job: the kernel charges
# memory to a cgroup in per-CPU batches of 64 pages and frees some of an exited process's kernel memory
# lazily, so a cgroup whose last job was a `true` still shows ~0.5-1.5 MiB; a job's page cache or tmpfs
# files left behind are over it (that cgroup is removed, not reused).
RESET_SLACK = 2 * 1024 * 1024


class V1Cgroups(Cgroups):
    version = 1

    def __init__(self, bases: dict[str, Path]) -> None:
        self.bases = bases
        self.homes = tuple(base.parent for base in dict.fromkeys(bases.values()))

    def describe(self) -> str:
        return "cgroup v1 (" + ", ".join(f"{c}: {p}" for c, p in self.bases.items()) + ")"

    def paths(self) -> list[Path]:
        return list(dict.fromkeys(self.bases.values()))

    def create(self, name: str, limits: Limits) -> JobCgroup:
        dirs = {c: base / safe_name(name) for c, base in self.bases.items()}
        group = V1JobCgroup(dirs, self.homes, limits)
        try:
            for d in dict.fromkeys(dirs.values()):
                d.mkdir(parents=True, exist_ok=True)  # parents: another worker may prune empty bases
            if "memory" in dirs and limits.memory_bytes > 0:
                mem = dirs["memory"]
                write_file(mem / "memory.limit_in_bytes", str(limits.memory_bytes))
                with contextlib.suppress(OSError):  # absent without swap accounting
                    write_file(mem / "memory.memsw.limit_in_bytes", str(limits.memory_bytes))
            # memory.swappiness 0 is inherited from the worker's base (set once, _detect_v1), and a new
            # cgroup's cpu.cfs_period_us is the kernel's default, CPU_PERIOD_US: two writes less a job.
            if "cpu" in dirs and limits.cores_mcpu > 0:
                write_file(dirs["cpu"] / "cpu.cfs_quota_us", str(cpu_quota_us(limits.cores_mcpu)))
            if "pids" in dirs and limits.pids > 0:
                write_file(dirs["pids"] / "pids.max", str(limits.pids))
        except OSError:
            group.remove()
            raise
        return group

    def remove_base(self) -> None:
        for base in dict.fromkeys(self.bases.values()):
            with contextlib.suppress(OSError):
                _rmdir(base)

    def remove_stale(self) -> None:
        for base in dict.fromkeys(self.bases.values()):
            for child in base.iterdir() if base.is_dir() else []:
                if child.is_dir():
                    _kill_pids(_pids(child / "cgroup.procs"))
                    with contextlib.suppress(OSError):
                        _rmdir(child)
            # Empty groups of workers that died without cleaning up (rmdir fails on a busy one).
            for sibling in base.parent.glob("corral-*"):
                if sibling != base and sibling.is_dir():
                    with contextlib.suppress(OSError):
                        _rmdir(sibling)


# ----------------------------------------------------------------------------- v2


class V2JobCgroup(JobCgroup):
    def __init__(self, path: Path) -> None:
        self.path = path
        self._peak_sampled = 0

    @property
    def procs_files(self) -> list[Path]:
        return [self.path / "cgroup.procs"]

    def pids(self) -> list[int]:
        return _pids(self.path / "cgroup.procs")

    def kill(self) -> None:
        try:
            write_file(self.path / "cgroup.kill", "1")  # Linux 5.14+: the whole tree, atomically
        except OSError:
            super().kill()

    def sample(self) -> None:
        self._peak_sampled = max(self._peak_sampled, self.memory_now())

    def memory_now(self) -> int:
        return _read_int(self.path / "memory.current")

    def usage(self) -> Usage:
        peak = _read_int(self.path / "memory.peak", -1)  # Linux 5.19+
        if peak < 0:
            self.sample()
            peak = self._peak_sampled
        return Usage(
            max_memory_bytes=peak,
            cpu_seconds=_keyed(self.path / "cpu.stat").get("usage_usec", 0) / 1e6,
        )

    def oom_kills(self) -> int:
        return _keyed(self.path / "memory.events").get("oom_kill", 0)

    def remove(self) -> bool:
        return _rmdir(self.path)


class V2Cgroups(Cgroups):
    version = 2

    def __init__(self, base: Path) -> None:
        self.base = base

    def describe(self) -> str:
        return f"cgroup v2 ({self.base})"

    def paths(self) -> list[Path]:
        return [self.base]

    def create(self, name: str, limits: Limits) -> JobCgroup:
        path = self.base / safe_name(name)
        path.mkdir(exist_ok=True)
        group = V2JobCgroup(path)
        try:
            if limits.memory_bytes > 0:
                write_file(path / "memory.max", str(limits.memory_bytes))
                with contextlib.suppress(OSError):
                    write_file(path / "memory.swap.max", "0")
            if limits.cores_mcpu > 0:
                write_file(path / "cpu.max", f"{cpu_quota_us(limits.cores_mcpu)} {CPU_PERIOD_US}")
            if limits.pids > 0:
                write_file(path / "pids.max", str(limits.pids))
        except OSError:
            group.remove()
            raise
        return group

    def remove_base(self) -> None:
        with contextlib.suppress(OSError):
            _rmdir(self.base)

    def remove_stale(self) -> None:
        for child in self.base.iterdir():
            if child.is_dir():
                V2JobCgroup(child).kill()
                with contextlib.suppress(OSError):
                    _rmdir(child)


# ----------------------------------------------------------------------------- detection


@dataclass(frozen=True)
class _Mount:
    root: str
    point: Path
    fstype: str
    options: frozenset[str]


def _mounts() -> list[_Mount]:
    mounts = []
    for line in _read(Path("/proc/self/mountinfo")).splitlines():
        left, _, right = line.partition(" - ")
        fields, tail = left.split(), right.split()
        if len(fields) < 5 or len(tail) < 3:
            continue
        point = fields[4].replace("\\040", " ")
        mounts.append(_Mount(fields[3], Path(point), tail[0], frozenset(tail[2].split(","))))
    return mounts


def _own_paths() -> dict[str, str]:
    """Controller name ('' for v2) -> this process's cgroup path."""
    out: dict[str, str] = {}
    for line in _read(Path("/proc/self/cgroup")).splitlines():
        _, controllers, path = line.split(":", 2)
        for c in controllers.split(",") if controllers else [""]:
            out[c] = path
    return out


def _under(mount: _Mount, own: str) -> Path:
    rel = own[len(mount.root) :] if mount.root != "/" and own.startswith(mount.root) else own
    return mount.point / rel.lstrip("/")


def _detect_v1(mounts: list[_Mount], own: dict[str, str], group: str) -> V1Cgroups | None:
    bases: dict[str, Path] = {}
    for controller in V1_CONTROLLERS:
        mount = next((m for m in mounts if m.fstype == "cgroup" and controller in m.options), None)
        if mount is not None and controller in own:
            bases[controller] = _under(mount, own[controller]) / group
    if "memory" not in bases:
        return None
    for base in dict.fromkeys(bases.values()):
        base.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):  # jobs' cgroups inherit it when they are made: no swapping
        write_file(bases["memory"] / "memory.swappiness", "0")
    return V1Cgroups(bases)


def _enable(path: Path, controllers: tuple[str, ...]) -> None:
    write_file(path / "cgroup.subtree_control", " ".join(f"+{c}" for c in controllers))


def _detect_v2(mounts: list[_Mount], own: dict[str, str], group: str) -> V2Cgroups | None:
    mount = next((m for m in mounts if m.fstype == "cgroup2"), None)
    if mount is None or "" not in own:
        return None
    available = set(_read(mount.point / "cgroup.controllers").split())
    wanted = tuple(c for c in V2_CONTROLLERS if c in available)
    if "memory" not in wanted:
        return None
    own_dir = _under(mount, own[""])
    enabled = set(_read(own_dir / "cgroup.subtree_control").split())
    if not set(wanted) <= enabled:
        try:
            _enable(own_dir, wanted)
        except OSError as exc:
            if exc.errno != errno.EBUSY:
                raise
            # "No internal processes": move this worker into a leaf of its own cgroup, then enable.
            leaf = own_dir / f"{group}.worker"
            leaf.mkdir(exist_ok=True)
            write_file(leaf / "cgroup.procs", str(os.getpid()))
            _enable(own_dir, wanted)
    base = own_dir / group
    base.mkdir(exist_ok=True)
    _enable(base, wanted)
    return V2Cgroups(base)


def detect_cgroups(instance_name: str) -> Cgroups | None:
    """The cgroup layout for this worker's jobs, or None (with a warning) if none is usable."""
    group = f"corral-{safe_name(instance_name)}"
    try:
        mounts, own = _mounts(), _own_paths()
        found: Cgroups | None = _detect_v1(mounts, own, group) or _detect_v2(mounts, own, group)
    except OSError as exc:
        log.warning("cgroups are not usable (%s): jobs run without memory/cpu limits", exc)
        return None
    if found is None:
        log.warning("no cgroup memory controller found: jobs run without memory/cpu limits")
    return found


@dataclass(frozen=True)
class ContainerCgroups:
    """Job cgroups for OCI runtimes, which take one `cgroupsPath` for every hierarchy.

    `relative` is the same path under each hierarchy's root (v1: below this worker's memory cgroup);
    `hierarchies` are all mount points on a v1 or hybrid host (runc/crun create the path in each).
    """

    cgroups: Cgroups
    relative: str
    hierarchies: tuple[Path, ...]


def detect_container_cgroups(instance_name: str) -> ContainerCgroups | None:
    group = f"corral-oci-{safe_name(instance_name)}"
    mounts, own = _mounts(), _own_paths()
    v1 = {c: m for c in V1_CONTROLLERS for m in mounts if m.fstype == "cgroup" and c in m.options}
    if "memory" in v1 and "memory" in own:
        relative = str(_under(v1["memory"], own["memory"]).relative_to(v1["memory"].point) / group)
        bases = {c: m.point / relative for c, m in v1.items()}
        for base in dict.fromkeys(bases.values()):
            base.mkdir(parents=True, exist_ok=True)
        points = tuple(m.point for m in mounts if m.fstype in ("cgroup", "cgroup2"))
        return ContainerCgroups(V1Cgroups(bases), "/" + relative.strip("/"), points)
    v2 = _detect_v2(mounts, own, group)
    if v2 is None:
        return None
    mount = next(m for m in mounts if m.fstype == "cgroup2")
    return ContainerCgroups(v2, "/" + str(v2.base.relative_to(mount.point)).strip("/"), ())
