"""What the host and process runtime tests share: building a job's request, running it, and finding
its processes through its cgroups."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from corral.config import Settings
from corral.runtimes import MainRequest, MainResult
from corral.runtimes.config import JobsConfig
from corral.runtimes.host import HostRuntime
from corral.runtimes.process import ProcessRuntime

MiB = 1024 * 1024
NOT_CI = os.environ.get("CI") != "true"  # in CI a missing component is a failure, never a skip
# Both runtimes that run jobs in cgroups on the host: a test module's `runtime` fixture takes these params.
CGROUP_RUNTIMES = [
    pytest.param("host", marks=pytest.mark.skipif(NOT_CI and os.geteuid() != 0, reason="needs root")),
    pytest.param("process", marks=pytest.mark.skipif(
        NOT_CI and (os.geteuid() != 0 or shutil.which("bwrap") is None), reason="needs root and bwrap")),
]
Make = Callable[..., MainRequest]
# A job's Python that forks sleeping children until a fork is refused (at most 60), then prints how many.
FORK_UNTIL_REFUSED = (
    "import os, time\n"
    "n = 0\n"
    "for _ in range(60):\n"
    "    try:\n"
    "        pid = os.fork()\n"
    "    except OSError:\n"
    "        break\n"
    "    if pid == 0:\n"
    "        time.sleep(30)\n"
    "        os._exit(0)\n"
    "    n += 1\n"
    "print('forked', n)\n"
)


def request_builder(tmp_path: Path) -> Make:
    """make(command, **fields): a MainRequest with its own io and tmp dirs; a str command runs in bash."""

    def build(command: list[str] | str, **kwargs: object) -> MainRequest:
        scratch = tmp_path / f"job-{uuid.uuid4().hex[:6]}"
        for d in ("io", "tmp"):
            (scratch / d).mkdir(parents=True)
        argv = ["bash", "-c", command] if isinstance(command, str) else command
        fields: dict[str, object] = {
            "key": f"1.{uuid.uuid4().int % 10**6}.1", "command": argv, "io_dir": scratch / "io",
            "scratch": scratch, "tmp_dir": scratch / "tmp", "log_path": scratch / "main.log",
            "memory_bytes": 256 * MiB, "cores_mcpu": 1000,
        }
        fields.update(kwargs)
        return MainRequest(**fields)  # type: ignore[arg-type]

    return build


async def started_runtime(kind: str, tmp_path: Path, name: str | None = None) -> ProcessRuntime:
    """A started host or process runtime (`kind`) with its work dir in tmp_path; it must have cgroups."""
    name = name or f"test-{uuid.uuid4().hex[:8]}"
    if kind == "host":
        settings = Settings(home=tmp_path / "home", jobs=JobsConfig(allow_host_runtime=True))
        rt: ProcessRuntime = HostRuntime(instance_name=name, work_dir=tmp_path, settings=settings)
    else:
        rt = ProcessRuntime(instance_name=name, work_dir=tmp_path)
    await rt.start()
    assert rt.cgroups is not None, "these tests need job cgroups"
    return rt


async def started_v1_runtime(kind: str, tmp_path: Path, why: str) -> ProcessRuntime:
    """started_runtime, for tests of what only cgroup v1 does (`why`): skipped, closed, elsewhere."""
    from corral.runtimes.cgroups import V1Cgroups

    rt = await started_runtime(kind, tmp_path)
    if not isinstance(rt.cgroups, V1Cgroups):
        await rt.close()
        pytest.skip(why)
    return rt


async def run(runtime: ProcessRuntime, req: MainRequest, cancel: asyncio.Event | None = None) -> MainResult:
    return await runtime.run(req, cancel or asyncio.Event())


def memory_limit_probe(runtime: ProcessRuntime) -> str:
    """A command printing the memory limit of the cgroup it runs in."""
    assert runtime.cgroups is not None
    if runtime.cgroups.version == 1:
        own = "$(grep ':memory:' /proc/self/cgroup | cut -d: -f3)"
        return f"cat /sys/fs/cgroup/memory{own}/memory.limit_in_bytes"
    return "cat /sys/fs/cgroup/unified$(grep '^0::' /proc/self/cgroup | cut -d: -f3)/memory.max"


def job_procs_files(runtime: ProcessRuntime, key: str) -> list[Path]:
    from corral.runtimes.cgroups import V1Cgroups, V2Cgroups, safe_name

    cg = runtime.cgroups
    if isinstance(cg, V1Cgroups):
        return [base / safe_name(key) / "cgroup.procs" for base in dict.fromkeys(cg.bases.values())]
    assert isinstance(cg, V2Cgroups)
    return [cg.base / safe_name(key) / "cgroup.procs"]


def pids_in(dirs: list[Path]) -> set[int]:
    """The job's processes in its cgroups; never this test process, the worker here: on cgroup v1 a
    spawner thread sits in the job's cgroups while it starts the job, and cgroup.procs lists its pid."""
    pids: set[int] = set()
    for d in dirs:
        with contextlib.suppress(OSError):
            pids |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
    pids.discard(os.getpid())
    return pids


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False


async def released(runtime: ProcessRuntime) -> None:
    """Once every ended job's cgroup is back (kept for the next job or removed): that runs after the job,
    off its path (runtimes/cgroup_pool.py)."""
    for _ in range(500):
        if not runtime._cleanups:
            return
        await asyncio.gather(*runtime._cleanups, return_exceptions=True)
    raise AssertionError("job cgroups never released")


async def assert_cgroups_released(runtime: ProcessRuntime, key: str) -> None:
    """The ended job's cgroups hold no process and are gone, or kept empty for the next job."""
    await released(runtime)
    dirs = [f.parent for f in job_procs_files(runtime, key)]
    assert not pids_in(dirs), "processes left in an ended job's cgroups"
    pool = runtime.cgroup_pool
    kept = pool is not None and Path(dirs[0]).name in pool.by_name
    assert kept or not any(d.exists() for d in dirs), f"job cgroups left, not kept: {dirs}"
