"""The process runtime puts a sandbox in the job's cgroups before the job's first instruction, without a
shell in between: bwrap born in them (a thread joins them alone: cgroup v1), or held at a gate until the
worker has moved it there (runtimes/spawn.py SandboxGate; v2, and forced on v1 here so both ways are
tested on every machine). Real bwrap, real cgroups, root."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.integration.runtime_support import FORK_UNTIL_REFUSED, Make, alive, request_builder, run

from corral.runtimes.cgroups import safe_name
from corral.runtimes.process import ProcessRuntime
from corral.runtimes.sandbox import root_layout
from corral.runtimes.spawn import SandboxGate

pytestmark = pytest.mark.skipif(
    os.environ.get("CI") != "true" and (os.geteuid() != 0 or shutil.which("bwrap") is None),
    reason="needs root (job cgroups) and bwrap",
)


@pytest.fixture(params=[True, False], ids=["born-in-cgroups", "gate"])
async def runtime(tmp_path: Path, request: pytest.FixtureRequest) -> AsyncIterator[ProcessRuntime]:
    rt = ProcessRuntime(instance_name=f"test-{uuid.uuid4().hex[:8]}", work_dir=tmp_path / "wd")
    rt.born_in_cgroups = request.param
    await rt.start()
    assert rt.cgroups is not None, "these tests need job cgroups"
    yield rt
    await rt.close()


@pytest.fixture
def make(tmp_path: Path) -> Make:
    return request_builder(tmp_path)


async def test_the_jobs_first_process_is_in_every_one_of_its_cgroups(
    runtime: ProcessRuntime, make: Make
) -> None:
    req = make(["cat", "/proc/self/cgroup"])
    result = await run(runtime, req)
    assert result.state == "succeeded", req.log_path.read_text()
    own = safe_name(req.key)
    lines = req.log_path.read_text().splitlines()
    assert runtime.cgroups is not None
    if runtime.cgroups.version == 1:
        wanted = {"memory", "pids", "cpu", "cpuacct"}
        ours = [line for line in lines if line.rstrip().endswith("/" + own)]
        joined = {c for line in ours for c in line.split(":")[1].split(",")}
        assert wanted <= joined, lines
    else:
        assert any(line.startswith("0::") and line.rstrip().endswith("/" + own) for line in lines), lines


async def test_the_pids_limit_holds_from_the_first_instruction(runtime: ProcessRuntime, make: Make) -> None:
    runtime.pids_limit = 12
    req = make([sys.executable, "-c", FORK_UNTIL_REFUSED])
    result = await run(runtime, req)
    assert result.state == "succeeded", req.log_path.read_text()
    forked = int(req.log_path.read_text().split()[-1])
    assert forked < 12, f"{forked} forks under a pids limit of 12"


async def test_exceeding_the_memory_limit_at_once_is_out_of_memory(
    runtime: ProcessRuntime, make: Make
) -> None:
    hog = "b = bytearray(200 * 1024 * 1024); print('survived')"
    req = make([sys.executable, "-c", hog], memory_bytes=64 * 1024 * 1024)
    result = await run(runtime, req)
    assert result.state == "failed" and result.out_of_memory, req.log_path.read_text()
    assert "survived" not in req.log_path.read_text()


def test_a_sandbox_whose_gate_never_opens_never_runs_the_job(tmp_path: Path) -> None:
    """The worker dies between starting bwrap and joining the cgroups: its end of the gate closes, and
    the sandbox must keep waiting (not read end-of-file and go on outside the job's cgroups)."""
    marker = tmp_path / "ran"
    gate = SandboxGate([])
    bwrap = shutil.which("bwrap") or "/usr/bin/bwrap"
    argv = [bwrap, *root_layout(), "--bind", str(tmp_path), str(tmp_path), "--unshare-pid", "--unshare-net",
            *gate.args(), "--", "touch", str(marker)]
    proc = subprocess.Popen(argv, pass_fds=gate.fds, start_new_session=True, stdin=subprocess.DEVNULL)
    try:
        sandbox = gate.sandbox_pid()
        assert sandbox is not None
        os.close(gate.go_w)  # as a dying worker's would be
        gate.go_w = -1
        time.sleep(1.0)  # ample for bwrap to reach the job if it went on at end-of-file
        assert not marker.exists(), "the job ran although its cgroups were never joined"
        assert alive(sandbox), "the sandbox should still be waiting at its gate"
    finally:
        gate.close()
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    deadline = time.monotonic() + 30
    while alive(sandbox) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not alive(sandbox)
    assert not marker.exists()


async def test_a_sandbox_that_cannot_start_fails(runtime: ProcessRuntime, make: Make) -> None:
    req = make(["true"])
    req.io_dir.rmdir()  # bwrap cannot bind a missing /io: it exits before creating the sandbox
    result = await asyncio.wait_for(run(runtime, req), 60)
    assert result.state in ("failed", "error")
    assert result.exit_code != 0
