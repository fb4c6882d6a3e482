"""The host runtime against real cgroups and real processes: limits, OOM, timeout, kill, opt-in (root)."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.integration.runtime_support import Make, alive, job_procs_files, pids_in, request_builder, run

from corral.config import Settings
from corral.runtimes import RuntimeUnavailable, runtime_class
from corral.runtimes.config import JobsConfig
from corral.runtimes.host import HostRuntime

pytestmark = pytest.mark.skipif(
    os.environ.get("CI") != "true" and os.geteuid() != 0, reason="needs root (job cgroups)"
)


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
    return request_builder(tmp_path)


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


async def test_timeout_kills_the_job(runtime: HostRuntime, make: Make) -> None:
    req = make("sleep 300 & echo $! > bg.pid; wait", timeout=0.5)
    result = await run(runtime, req)
    assert result.state == "error" and result.timed_out
    pid = int((req.io_dir / "bg.pid").read_text())
    deadline = time.monotonic() + 5
    while alive(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert not alive(pid), "the job's background process outlived its timeout"


async def test_cancel_kills_the_whole_tree_with_grandchildren(runtime: HostRuntime, make: Make) -> None:
    req = make("setsid bash -c 'sleep 300 & echo $! > grandchild.pid; wait' & sleep 300")
    cancel = asyncio.Event()
    task = asyncio.create_task(run(runtime, req, cancel))
    pidfile = req.io_dir / "grandchild.pid"
    deadline = time.monotonic() + 20
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    grandchild = int(pidfile.read_text())
    group_dirs = [Path(p).parent for p in job_procs_files(runtime, req.key)]
    host_pids = pids_in(group_dirs)
    assert grandchild in host_pids  # escaped the session, not the cgroup
    cancel.set()
    result = await asyncio.wait_for(task, 20)
    assert result.state == "cancelled"
    deadline = time.monotonic() + 5
    while any(alive(p) for p in host_pids) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert not any(alive(p) for p in host_pids)


async def test_network_request_it_cannot_honour_is_noted(runtime: HostRuntime, make: Make) -> None:
    result = await run(runtime, make("true", network="none"))
    assert result.state == "succeeded"
    assert result.note and "not enforced" in result.note
