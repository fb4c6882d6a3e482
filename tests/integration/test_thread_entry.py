"""On cgroup v1 a job's first process is born in its cgroups: the starting thread joins them alone ("0"
into `tasks`: the writing thread), starts the process and goes back (runtimes/spawn.py). Real cgroups,
real processes, root. What is checked afterwards is the host: every thread of the worker back in its
own cgroups, the job's cgroups empty (gone, or kept for the next job), nothing of the worker listed
as the job's."""

from __future__ import annotations

import asyncio
import os
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.integration.runtime_support import (
    FORK_UNTIL_REFUSED,
    Make,
    assert_cgroups_released,
    request_builder,
    run,
    started_v1_runtime,
)

from corral.runtimes.cgroups import Limits, ThreadEntry, V1Cgroups, V1JobCgroup, safe_name
from corral.runtimes.host import HostRuntime
from corral.runtimes.spawn import _join, _leave, spawn

pytestmark = pytest.mark.skipif(
    os.environ.get("CI") != "true" and os.geteuid() != 0, reason="needs root (job cgroups)"
)

@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[HostRuntime]:
    rt = await started_v1_runtime("host", tmp_path, "a thread joins a cgroup alone on cgroup v1 only")
    assert isinstance(rt, HostRuntime)
    yield rt
    await rt.close()


@pytest.fixture
def make(tmp_path: Path) -> Make:
    return request_builder(tmp_path)


def _thread_cgroups() -> dict[int, set[str]]:
    """Each thread of this process -> the cgroup paths it is in (one per hierarchy); a thread that ends
    while it is looked at (an executor's, the job spawner's waiter) is in none."""
    out: dict[int, set[str]] = {}
    for tid in os.listdir("/proc/self/task"):
        try:
            with open(f"/proc/self/task/{tid}/cgroup") as f:
                out[int(tid)] = {line.split(":", 2)[2].strip() for line in f if line.strip()}
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def _assert_every_thread_home() -> None:
    own = _thread_cgroups()[os.getpid()]
    astray = {tid: paths - own for tid, paths in _thread_cgroups().items() if paths != own}
    assert not astray, f"threads of the worker left in other cgroups: {astray}"


async def test_the_jobs_first_process_is_born_in_every_one_of_its_cgroups(
    runtime: HostRuntime, make: Make
) -> None:
    reqs = [make(["cat", "/proc/self/cgroup"]) for _ in range(12)]
    results = await asyncio.gather(*(run(runtime, r) for r in reqs))  # concurrent: several spawner threads
    for req, result in zip(reqs, results, strict=True):
        assert result.state == "succeeded", req.log_path.read_text()
        lines = req.log_path.read_text().splitlines()
        ours = [line for line in lines if line.rstrip().endswith("/" + safe_name(req.key))]
        joined = {c for line in ours for c in line.split(":")[1].split(",")}
        assert {"memory", "pids", "cpu", "cpuacct"} <= joined, lines
        await assert_cgroups_released(runtime, req.key)
    _assert_every_thread_home()


async def test_a_thread_joins_alone_the_rest_of_the_worker_stays_home(runtime: HostRuntime) -> None:
    """What the starting thread writes moves that thread only (v1 `tasks`), not the worker's process."""
    assert isinstance(runtime.cgroups, V1Cgroups)
    group = runtime.cgroups.create("alone-test", Limits())
    entry = group.thread_entry
    assert entry is not None
    seen: dict[str, object] = {}

    def joins() -> None:
        _join(entry.enter)
        try:
            seen["main"] = _thread_cgroups()[os.getpid()]
            with open("/proc/thread-self/cgroup") as f:
                seen["mine"] = [line.strip() for line in f if line.rstrip().endswith("/alone-test")]
        finally:
            _leave(entry.home)

    try:
        own = _thread_cgroups()[os.getpid()]
        thread = threading.Thread(target=joins)
        thread.start()
        thread.join()
        assert seen["main"] == own, "the main thread moved with the joining thread"
        assert isinstance(seen["mine"], list) and len(seen["mine"]) == len(entry.enter), seen["mine"]
        assert group.pids() == [] and group.remove(), "the joining thread stayed in the job's cgroups"
    finally:
        group.remove()
    _assert_every_thread_home()


async def test_the_pids_limit_holds_from_the_first_instruction(runtime: HostRuntime, make: Make) -> None:
    runtime.pids_limit = 12
    req = make([sys.executable, "-c", FORK_UNTIL_REFUSED])
    result = await run(runtime, req)
    assert result.state == "succeeded", req.log_path.read_text()
    forked = int(req.log_path.read_text().split()[-1])
    assert 0 < forked < 12, f"{forked} forks under a pids limit of 12"
    _assert_every_thread_home()


async def test_the_job_is_charged_its_own_memory_not_the_workers(runtime: HostRuntime, make: Make) -> None:
    hog = "b = bytearray(200 * 1024 * 1024); print('survived')"
    req = make([sys.executable, "-c", hog], memory_bytes=64 * 1024 * 1024)
    result = await run(runtime, req)
    assert result.state == "failed" and result.out_of_memory, req.log_path.read_text()
    small = make(["true"], memory_bytes=64 * 1024 * 1024)
    result = await run(runtime, small)
    assert result.state == "succeeded" and not result.out_of_memory
    assert result.max_memory_bytes < 32 * 1024 * 1024, "the worker's memory was charged to the job"
    _assert_every_thread_home()


async def test_a_cgroup_that_cannot_be_joined_starts_nothing_and_the_thread_comes_home(
    runtime: HostRuntime, tmp_path: Path
) -> None:
    assert isinstance(runtime.cgroups, V1Cgroups)
    group = runtime.cgroups.create("entry-test", Limits())
    assert isinstance(group, V1JobCgroup) and group.thread_entry is not None
    marker = tmp_path / "ran"
    missing = str(tmp_path / "no-such-cgroup" / "tasks")
    # The first cgroup is joined, the second cannot be: the thread must leave the first again.
    entry = ThreadEntry((group.thread_entry.enter[0], missing), group.thread_entry.home)
    try:
        for _ in range(10):  # more starts than spawner threads: every thread tried
            with pytest.raises(OSError, match="cannot join the job's cgroups"), open(os.devnull, "w") as out:
                await spawn(["touch", str(marker)], env={}, stdout=out.fileno(), cgroups=entry)
        assert not marker.exists()
        _assert_every_thread_home()
        assert group.remove(), "a thread stayed in the job's cgroup"
    finally:
        group.remove()


async def test_the_worker_is_never_listed_among_a_jobs_processes(runtime: HostRuntime) -> None:
    """While a spawner thread sits in a job's cgroups, v1 lists the worker's pid in cgroup.procs: a kill
    of the job's processes must not take the worker with it."""
    assert isinstance(runtime.cgroups, V1Cgroups)
    group = runtime.cgroups.create("listed-test", Limits())
    entry = group.thread_entry
    assert entry is not None
    tid = str(os.getpid()).encode()  # the main thread joins, as a spawner thread does for a moment
    try:
        for path in entry.enter:
            Path(path).write_bytes(tid)
        assert str(os.getpid()) in (group.procs_files[0]).read_text().split()
        assert group.pids() == []
        group.kill()  # would SIGKILL this test process if the worker were listed
    finally:
        for path in entry.home:
            Path(path).write_bytes(tid)
    assert group.remove()
    _assert_every_thread_home()


