"""The process runtime against real bubblewrap sandboxes and real cgroups (needs root and bwrap)."""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.integration.runtime_support import (
    Make,
    MiB,
    alive,
    assert_cgroups_released,
    job_procs_files,
    pids_in,
    request_builder,
    run,
)

from corral.runtimes import runtime_class
from corral.runtimes.process import IMAGE_NOTE, ProcessRuntime

# In CI a missing sandbox is a failure (scripts/setup.sh installs bubblewrap), never a skip.
pytestmark = pytest.mark.skipif(
    os.environ.get("CI") != "true" and (os.geteuid() != 0 or shutil.which("bwrap") is None),
    reason="needs root and bubblewrap (bwrap)",
)



@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[ProcessRuntime]:
    rt = runtime_class("process")(instance_name=f"test-{uuid.uuid4().hex[:8]}", work_dir=tmp_path)
    assert isinstance(rt, ProcessRuntime)
    await rt.start()
    yield rt
    await rt.close()


@pytest.fixture
def make(tmp_path: Path) -> Make:
    return request_builder(tmp_path)


async def test_stdout_and_stderr_land_in_the_log(runtime: ProcessRuntime, make: Make) -> None:
    req = make("echo to-stdout; echo to-stderr >&2")
    result = await run(runtime, req)
    assert result.state == "succeeded" and result.exit_code == 0
    log = req.log_path.read_text()
    assert "to-stdout" in log and "to-stderr" in log


async def test_nonzero_exit_fails_with_the_exit_code(runtime: ProcessRuntime, make: Make) -> None:
    result = await run(runtime, make("exit 7"))
    assert result.state == "failed"
    assert result.exit_code == 7
    assert not result.out_of_memory and not result.timed_out


async def test_env_vars_are_visible_and_worker_env_is_not(runtime: ProcessRuntime, make: Make) -> None:
    os.environ["CORRAL_WORKER_TOKEN_TEST"] = "secret"
    try:
        script = 'echo "G=$GREETING T=${CORRAL_WORKER_TOKEN_TEST:-none} H=$HOME P=$PATH"'
        req = make(script, env={"GREETING": "hi there"})
        assert (await run(runtime, req)).state == "succeeded"
    finally:
        del os.environ["CORRAL_WORKER_TOKEN_TEST"]
    log = req.log_path.read_text()
    assert "G=hi there" in log
    assert "T=none" in log
    assert "H=/tmp" in log and "/usr/bin" in log


async def test_io_is_the_working_dir_and_writes_reach_the_host(runtime: ProcessRuntime, make: Make) -> None:
    req = make("pwd; echo result > /io/out.txt; mkdir -p /io/sub && echo x > /io/sub/y")
    assert (await run(runtime, req)).state == "succeeded"
    assert req.log_path.read_text().strip() == "/io"
    assert (req.io_dir / "out.txt").read_text() == "result\n"
    assert (req.io_dir / "sub" / "y").read_text() == "x\n"


async def test_tmp_is_private_and_writable(runtime: ProcessRuntime, make: Make) -> None:
    marker = f"corral-test-{uuid.uuid4().hex}"
    req = make(f"echo hi > /tmp/{marker} && ls /tmp")
    assert (await run(runtime, req)).state == "succeeded"
    assert not Path("/tmp", marker).exists()  # the host's /tmp is untouched
    assert (req.tmp_dir / marker).exists()


async def test_host_files_outside_io_and_tmp_are_read_only(
    runtime: ProcessRuntime, make: Make, tmp_path: Path
) -> None:
    target = tmp_path / "host-file"
    target.write_text("original")
    script = (
        f"for f in /etc/corral-test {target} /usr/corral-test /root/corral-test; do "
        "if echo changed > $f 2>/dev/null; then echo WROTE $f; else echo DENIED $f; fi; done"
    )
    req = make(script)
    assert (await run(runtime, req)).state == "succeeded"
    log = req.log_path.read_text()
    assert "WROTE" not in log, log
    assert log.count("DENIED") == 4
    assert target.read_text() == "original"
    assert not Path("/etc/corral-test").exists()


async def test_jobs_run_in_a_private_pid_namespace(runtime: ProcessRuntime, make: Make) -> None:
    req = make("ls /proc | grep -c '^[0-9]'")
    assert (await run(runtime, req)).state == "succeeded"
    assert int(req.log_path.read_text().strip()) < 10  # only the sandbox's own processes


async def test_python_allocation_over_the_limit_is_out_of_memory(runtime: ProcessRuntime, make: Make) -> None:
    cmd = [sys.executable, "-c", "x = bytearray(200 * 1024 * 1024); print(len(x))"]
    result = await run(runtime, make(cmd, memory_bytes=64 * MiB))
    assert result.state == "failed" and result.out_of_memory


async def test_within_the_limit_succeeds_and_reports_usage(runtime: ProcessRuntime, make: Make) -> None:
    result = await run(runtime, make("head -c 20M /dev/zero | tail > /dev/null", memory_bytes=256 * MiB))
    assert result.state == "succeeded" and not result.out_of_memory
    assert result.max_memory_bytes >= 20 * MiB
    assert result.cpu_seconds > 0


async def test_timeout_kills_the_job_and_is_an_error(runtime: ProcessRuntime, make: Make) -> None:
    t0 = time.monotonic()
    result = await run(runtime, make("sleep 30", timeout=0.5))
    assert time.monotonic() - t0 < 5
    assert result.state == "error"
    assert result.timed_out
    assert result.error == "timed out after 0.5s"


async def test_cancel_kills_the_whole_tree_with_grandchildren(runtime: ProcessRuntime, make: Make) -> None:
    # A grandchild that escapes into its own session, writes its host-visible pid... and would keep running.
    req = make("setsid bash -c 'sleep 300 & echo $! > /io/grandchild.pid; wait' & sleep 300")
    cancel = asyncio.Event()
    task = asyncio.create_task(run(runtime, req, cancel))
    pidfile = req.io_dir / "grandchild.pid"
    for _ in range(200):
        if pidfile.exists() and pidfile.read_text().strip():
            break
        await asyncio.sleep(0.02)
    group_dirs = [Path(p).parent for p in job_procs_files(runtime, req.key)]
    host_pids = pids_in(group_dirs)
    assert len(host_pids) >= 3  # the sandbox and the job's processes are all in the job's cgroup
    cancel.set()
    result = await asyncio.wait_for(task, 10)
    assert result.state == "cancelled"
    # SIGKILL is asynchronous: a process leaves its cgroup before it is a zombie; let it finish dying.
    deadline = time.monotonic() + 3
    while any(alive(pid) for pid in host_pids) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    for pid in host_pids:
        assert not alive(pid), f"pid {pid} survived the cancel"
    await assert_cgroups_released(runtime, req.key)


async def test_background_processes_end_with_the_job(runtime: ProcessRuntime, make: Make) -> None:
    req = make("sleep 300 & echo started")
    group_dirs = [Path(p).parent for p in job_procs_files(runtime, req.key)]
    task = asyncio.create_task(run(runtime, req))
    seen: set[int] = set()
    while not task.done():
        seen |= pids_in(group_dirs)
        await asyncio.sleep(0.001)
    assert (await task).state == "succeeded"
    await asyncio.sleep(0.05)
    assert all(not alive(p) for p in seen)


async def test_cpu_quota_is_applied(runtime: ProcessRuntime, make: Make) -> None:
    assert runtime.cgroups is not None
    if runtime.cgroups.version == 1:  # the period is the kernel's default; the quota a quarter of it
        own = "/sys/fs/cgroup/cpu$(grep ':cpu:' /proc/self/cgroup | cut -d: -f3)"
        probe = f"cat {own}/cpu.cfs_quota_us {own}/cpu.cfs_period_us"
        expected = "25000\n100000"
    else:
        probe = "cat /sys/fs/cgroup/unified$(grep '^0::' /proc/self/cgroup | cut -d: -f3)/cpu.max"
        expected = "25000 100000"
    req = make(probe, cores_mcpu=250)
    result = await run(runtime, req)
    assert result.state == "succeeded", req.log_path.read_text()
    assert req.log_path.read_text().strip() == expected


async def test_a_jobs_memory_is_never_swapped(runtime: ProcessRuntime, make: Make) -> None:
    assert runtime.cgroups is not None
    if runtime.cgroups.version != 1:
        pytest.skip("cgroup v1's memory.swappiness (inherited from the worker's base)")
    probe = "cat /sys/fs/cgroup/memory$(grep ':memory:' /proc/self/cgroup | cut -d: -f3)/memory.swappiness"
    req = make(probe)
    result = await run(runtime, req)
    assert result.state == "succeeded", req.log_path.read_text()
    assert req.log_path.read_text().strip() == "0"


async def test_cpu_quota_throttles_a_busy_job(runtime: ProcessRuntime, make: Make) -> None:
    result = await run(runtime, make("timeout 1 sh -c 'while :; do :; done'; true", cores_mcpu=200))
    wall = result.end - result.start
    assert result.state == "succeeded"
    assert result.cpu_seconds < 0.45 * wall, (result.cpu_seconds, wall)


async def test_network_none_has_only_loopback(runtime: ProcessRuntime, make: Make) -> None:
    req = make("tail -n +3 /proc/net/dev | cut -d: -f1", network="none")
    assert (await run(runtime, req)).state == "succeeded"
    interfaces = req.log_path.read_text().split()
    assert "lo" in interfaces and "eth0" not in interfaces


async def test_image_is_ignored_with_a_note(runtime: ProcessRuntime, make: Make) -> None:
    result = await run(runtime, make("true", image="ubuntu:24.04"))
    assert result.state == "succeeded"
    assert result.note == IMAGE_NOTE


async def test_bash_jobs_skip_rc_files(runtime: ProcessRuntime, make: Make) -> None:
    req = make(["bash", "-i", "-c", "echo ran"])
    (req.tmp_dir / ".bashrc").write_text("echo RC-LOADED\n")  # the job's HOME is its /tmp
    assert (await run(runtime, req)).state == "succeeded"
    log = req.log_path.read_text()
    assert "ran" in log and "RC-LOADED" not in log


async def test_missing_command_fails_with_127(runtime: ProcessRuntime, make: Make) -> None:
    result = await run(runtime, make(["/no/such/program"]))
    assert result.state == "failed"
    assert result.exit_code in (1, 127)


async def test_many_jobs_run_concurrently(runtime: ProcessRuntime, make: Make) -> None:
    t0 = time.monotonic()
    results = await asyncio.gather(*(run(runtime, make("sleep 0.5")) for _ in range(8)))
    assert all(r.state == "succeeded" for r in results), [r.error for r in results]
    assert time.monotonic() - t0 < 3  # not 8 x 0.5 s
