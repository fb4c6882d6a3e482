"""Starting job processes off the event loop (runtimes/spawn.py): exit codes, fds, sessions, cancel."""

from __future__ import annotations

import asyncio
import os
import subprocess
import threading
import time
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


@pytest.mark.skipif(os.geteuid() != 0 and os.environ.get("CI") != "true", reason="needs root (setns)")
async def test_a_start_cancelled_midway_leaves_no_process(tmp_path: Path) -> None:
    marker = f"300.{uuid.uuid4().int % 10**9:09d}"  # `sleep 300.xxx`: found by its argv afterwards
    own_netns = Path(f"/proc/{os.getpid()}/ns/net")  # a namespace to enter: a spawner thread starts it
    with open(tmp_path / "out", "wb") as f:
        env = {"PATH": os.environ["PATH"]}
        task = asyncio.create_task(spawn(["sleep", marker], env=env, stdout=f.fileno(), netns=own_netns))
        await asyncio.sleep(0)  # the start is under way in a spawner thread
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert _running_with(marker) == []  # killed and reaped before the cancellation returned


async def test_a_plain_start_runs_on_the_loop_with_no_midway_to_cancel(tmp_path: Path) -> None:
    marker = f"300.{uuid.uuid4().int % 10**9:09d}"
    with open(tmp_path / "out", "wb") as f:
        env = {"PATH": os.environ["PATH"]}
        task = asyncio.create_task(spawn(["sleep", marker], env=env, stdout=f.fileno()))
        await asyncio.sleep(0)
        assert task.done()  # started within its first step: a cancellation finds it done or not begun
        task.cancel()
        proc = await task
    # The start returns as the child's exec begins: its new command line may show a moment later.
    deadline = time.monotonic() + 10
    while _running_with(marker) != [proc.pid] and time.monotonic() < deadline:
        await asyncio.sleep(0.01)
    assert _running_with(marker) == [proc.pid]
    os.kill(proc.pid, 9)
    assert await asyncio.wait_for(proc.wait(), 30) == -9
    assert _running_with(marker) == []


def _net_of(pid: int | str) -> str:
    return os.readlink(f"/proc/{pid}/ns/net")


@pytest.mark.skipif(os.geteuid() != 0 and os.environ.get("CI") != "true", reason="needs root (setns)")
async def test_a_start_in_a_network_namespace_leaves_the_spawner_threads_at_home(tmp_path: Path) -> None:
    other = subprocess.Popen(["unshare", "--net", "sleep", "300"])
    try:
        deadline = time.monotonic() + 30
        while _net_of(other.pid) == _net_of("self") and time.monotonic() < deadline:
            await asyncio.sleep(0.01)  # unshare has not switched yet
        netns = Path(f"/proc/{other.pid}/ns/net")
        out = tmp_path / "in"
        with open(out, "wb") as f:
            env = {"PATH": os.environ["PATH"]}
            inside = [spawn(["readlink", "/proc/self/ns/net"], env=env, stdout=f.fileno(), netns=netns)
                      for _ in range(6)]
            procs = await asyncio.gather(*inside)
            assert [await p.wait() for p in procs] == [0] * 6
        assert set(out.read_text().split()) == {_net_of(other.pid)}
        # Every spawner thread is back in the worker's namespace: later starts are at home.
        outside = [_run(["readlink", "/proc/self/ns/net"], tmp_path / f"out{i}") for i in range(6)]
        assert await asyncio.gather(*outside) == [0] * 6
        assert {(tmp_path / f"out{i}").read_text().strip() for i in range(6)} == {_net_of("self")}
    finally:
        other.kill()
        other.wait()


@pytest.mark.skipif(os.geteuid() != 0 and os.environ.get("CI") != "true", reason="needs root (setns)")
def test_a_spawner_thread_left_in_another_namespace_refuses_to_start_jobs(tmp_path: Path) -> None:
    from corral.runtimes import spawn as spawn_module

    other = subprocess.Popen(["unshare", "--net", "sleep", "300"])
    errors: list[BaseException] = []

    def stray_thread() -> None:
        fd = os.open(f"/proc/{other.pid}/ns/net", os.O_RDONLY)
        try:
            spawn_module._setns(fd)  # as if a start had failed to come back
            spawn_module._start(["true"], {}, 1, None, ())
        except OSError as exc:
            errors.append(exc)
        finally:
            os.close(fd)

    try:
        deadline = time.monotonic() + 30
        while _net_of(other.pid) == _net_of("self") and time.monotonic() < deadline:
            time.sleep(0.01)
        thread = threading.Thread(target=stray_thread)
        thread.start()
        thread.join(60)
        assert errors and "network namespace" in str(errors[0])
    finally:
        other.kill()
        other.wait()
