"""Starting job processes off the event loop (runtimes/spawn.py): exit codes, fds, sessions, cancel."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import pytest
from tests.integration.runtime_support import alive

from corral.runtimes.childwatch import pidfd_usable
from corral.runtimes.spawn import PidfdProcess, spawn

pytestmark = pytest.mark.skipif(not pidfd_usable(), reason="needs pidfd_open (Linux 5.3+)")


async def _run(argv: list[str], out: Path, **kwargs: object) -> int:
    with open(out, "wb") as f:
        proc = await spawn(argv, env={"PATH": os.environ["PATH"], "X": "1"}, stdout=f.fileno(), **kwargs)  # type: ignore[arg-type]
    assert isinstance(proc, PidfdProcess)
    return await asyncio.wait_for(proc.wait(), 60)


async def test_exit_codes_output_env_and_cwd(tmp_path: Path) -> None:
    out = tmp_path / "out"
    assert await _run(["sh", "-c", "echo $X; pwd; echo err >&2; exit 3"], out, cwd=tmp_path) == 3
    assert out.read_text().split() == ["1", str(tmp_path), "err"]
    codes = await asyncio.gather(*(_run(["sh", "-c", f"exit {i}"], tmp_path / f"o{i}") for i in range(20)))
    assert codes == list(range(20))
    assert await _run(["sh", "-c", "kill -9 $$"], out) == -9


async def test_only_the_passed_fds_are_inherited_and_the_job_has_its_own_session(tmp_path: Path) -> None:
    keep_r, keep_w = os.pipe()
    other_r, other_w = os.pipe()
    os.set_inheritable(other_w, True)  # even an inheritable fd of the worker must not reach the job
    try:
        out = tmp_path / "out"
        script = 'ls /proc/$$/fd; echo sid=$(cut -d" " -f6 /proc/$$/stat) pid=$$'
        assert await _run(["sh", "-c", script], out, pass_fds=[keep_w]) == 0
        lines = out.read_text().split()
        fds = {int(x) for x in lines if x.isdigit()}
        assert keep_w in fds
        assert other_w not in fds and other_r not in fds and keep_r not in fds
        sid = next(x for x in lines if x.startswith("sid=")).split("=")[1]
        pid = next(x for x in lines if x.startswith("pid=")).split("=")[1]
        assert sid == pid  # a session of its own: the worker kills the job by it
    finally:
        for fd in (keep_r, keep_w, other_r, other_w):
            os.close(fd)


def _running_with(arg: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    if arg.encode() in f.read().split(b"\0") and alive(int(entry)):
                        found.append(int(entry))
            except OSError:
                continue
    return found


async def test_a_start_cancelled_midway_leaves_no_process(tmp_path: Path) -> None:
    marker = f"300.{uuid.uuid4().int % 10**9:09d}"  # `sleep 300.xxx`: found by its argv afterwards
    with open(tmp_path / "out", "wb") as f:
        env = {"PATH": os.environ["PATH"]}
        task = asyncio.create_task(spawn(["sleep", marker], env=env, stdout=f.fileno()))
        await asyncio.sleep(0)  # the start is under way in a spawner thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert _running_with(marker) == []  # killed and reaped before the cancellation returned
