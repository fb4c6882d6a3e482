"""The host runtime against real cgroups and real processes: limits, OOM, timeout, kill, opt-in (root)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest

from corral.config import Settings
from corral.runtimes import MainRequest, MainResult, RuntimeUnavailable, runtime_class
from corral.runtimes.config import JobsConfig
from corral.runtimes.host import HostRuntime

pytestmark = pytest.mark.skipif(
    os.environ.get("CI") != "true" and os.geteuid() != 0, reason="needs root (job cgroups)"
)
MiB = 1024 * 1024
Make = Callable[..., MainRequest]


def _settings(tmp_path: Path, allow: bool) -> Settings:
    return Settings(home=tmp_path / "home", jobs=JobsConfig(allow_host_runtime=allow))


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[HostRuntime]:
    rt = HostRuntime(instance_name=f"test-{uuid.uuid4().hex[:8]}", work_dir=tmp_path,
                     settings=_settings(tmp_path, True))
    await rt.start()
    assert rt.cgroups is not None, "the host runtime's tests need job cgroups"
    yield rt
    await rt.close()


@pytest.fixture
def make(tmp_path: Path) -> Make:
    def build(command: str, **kwargs: object) -> MainRequest:
        scratch = tmp_path / f"job-{uuid.uuid4().hex[:6]}"
        for d in ("io", "tmp"):
            (scratch / d).mkdir(parents=True)
        fields: dict[str, object] = {
            "key": f"1.{uuid.uuid4().int % 10**6}.1", "command": ["bash", "-c", command],
            "io_dir": scratch / "io", "scratch": scratch, "tmp_dir": scratch / "tmp",
            "log_path": scratch / "main.log", "memory_bytes": 256 * MiB, "cores_mcpu": 1000,
        }
        fields.update(kwargs)
        return MainRequest(**fields)  # type: ignore[arg-type]

    return build


async def run(runtime: HostRuntime, req: MainRequest, cancel: asyncio.Event | None = None) -> MainResult:
    return await runtime.run(req, cancel or asyncio.Event())


async def test_refused_without_the_sites_opt_in(tmp_path: Path) -> None:
    assert runtime_class("host") is HostRuntime
    rt = HostRuntime(instance_name="test-refused", work_dir=tmp_path, settings=_settings(tmp_path, False))
    with pytest.raises(RuntimeUnavailable, match="allow_host_runtime"):
        await rt.start()
    assert JobsConfig().allow_host_runtime is False  # never the default


async def test_runs_in_the_io_dir_on_the_host(runtime: HostRuntime, make: Make) -> None:
    req = make("pwd; echo $TMPDIR; echo hi > out.txt")
    result = await run(runtime, req)
    assert result.state == "succeeded" and result.exit_code == 0
    assert req.log_path.read_text().split() == [str(req.io_dir), str(req.tmp_dir)]
    assert (req.io_dir / "out.txt").read_text() == "hi\n"


async def test_job_joins_its_cgroup_with_its_limits(runtime: HostRuntime, make: Make) -> None:
    assert runtime.cgroups is not None
    if runtime.cgroups.version == 1:
        own = "$(grep ':memory:' /proc/self/cgroup | cut -d: -f3)"
        probe = f"cat /sys/fs/cgroup/memory{own}/memory.limit_in_bytes"
    else:
        probe = "cat /sys/fs/cgroup/unified$(grep '^0::' /proc/self/cgroup | cut -d: -f3)/memory.max"
    req = make(probe, memory_bytes=100 * MiB)
    result = await run(runtime, req)
    assert result.state == "succeeded", req.log_path.read_text()
    assert int(req.log_path.read_text().strip()) == 100 * MiB


async def test_exceeding_the_memory_limit_fails_out_of_memory(runtime: HostRuntime, make: Make) -> None:
    result = await run(runtime, make("head -c 200M /dev/zero | tail > /dev/null", memory_bytes=64 * MiB))
    assert result.state == "failed" and result.out_of_memory and result.exit_code == 137
    assert result.error and "memory" in result.error


async def test_timeout_kills_the_job(runtime: HostRuntime, make: Make) -> None:
    req = make("sleep 300 & echo $! > bg.pid; wait", timeout=0.5)
    result = await run(runtime, req)
    assert result.state == "error" and result.timed_out
    pid = int((req.io_dir / "bg.pid").read_text())
    deadline = time.monotonic() + 5
    while _alive(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert not _alive(pid), "the job's background process outlived its timeout"


async def test_cancel_kills_the_whole_tree_with_grandchildren(runtime: HostRuntime, make: Make) -> None:
    req = make("setsid bash -c 'sleep 300 & echo $! > grandchild.pid; wait' & sleep 300")
    cancel = asyncio.Event()
    task = asyncio.create_task(run(runtime, req, cancel))
    pidfile = req.io_dir / "grandchild.pid"
    deadline = time.monotonic() + 20
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    grandchild = int(pidfile.read_text())
    group_dirs = [Path(p).parent for p in _job_procs_files(runtime, req.key)]
    host_pids = _pids_in(group_dirs)
    assert grandchild in host_pids  # escaped the session, not the cgroup
    cancel.set()
    result = await asyncio.wait_for(task, 20)
    assert result.state == "cancelled"
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in host_pids) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert not any(_alive(p) for p in host_pids)


async def test_network_request_it_cannot_honour_is_noted(runtime: HostRuntime, make: Make) -> None:
    result = await run(runtime, make("true", network="none"))
    assert result.state == "succeeded"
    assert result.note and "not enforced" in result.note


def _job_procs_files(runtime: HostRuntime, key: str) -> list[Path]:
    from corral.runtimes.cgroups import V1Cgroups, V2Cgroups, safe_name

    cg = runtime.cgroups
    if isinstance(cg, V1Cgroups):
        return [base / safe_name(key) / "cgroup.procs" for base in dict.fromkeys(cg.bases.values())]
    assert isinstance(cg, V2Cgroups)
    return [cg.base / safe_name(key) / "cgroup.procs"]


def _pids_in(dirs: list[Path]) -> set[int]:
    pids: set[int] = set()
    for d in dirs:
        with contextlib.suppress(OSError):
            pids |= {int(p) for p in (d / "cgroup.procs").read_text().split()}
    return pids


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(") ", 1)[1][0] != "Z"
    except (FileNotFoundError, IndexError):
        return False
