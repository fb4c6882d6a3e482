"""The pidfd child watcher the worker installs: exit codes, signals, several loops, the runtimes on it."""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration.runtime_support import request_builder, run

from corral.config import Settings
from corral.runtimes.childwatch import LoopPidfdWatcher, install_pidfd_watcher, pidfd_usable
from corral.runtimes.process import ProcessRuntime

pytestmark = pytest.mark.skipif(not pidfd_usable(), reason="needs pidfd_open (Linux 5.3+)")


@pytest.fixture(scope="module", autouse=True)
def pidfd_watcher() -> Iterator[None]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = asyncio.get_event_loop_policy()
        previous = getattr(policy, "_watcher", None)
        assert install_pidfd_watcher()
        assert isinstance(asyncio.get_child_watcher(), LoopPidfdWatcher)
        try:
            yield
        finally:
            policy._watcher = previous  # type: ignore[attr-defined]


def _waitpid_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name.startswith("waitpid-")]


async def _exit_code(*argv: str) -> int:
    proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.DEVNULL)
    return await proc.wait()


async def test_exit_codes_and_signals_are_reported_without_a_thread_per_child() -> None:
    before = _waitpid_threads()
    codes = await asyncio.gather(*(_exit_code("sh", "-c", f"exit {i}") for i in range(40)))
    assert codes == list(range(40))
    killed = await _exit_code("sh", "-c", "kill -9 $$")
    assert killed == -9
    assert _waitpid_threads() == before  # no waitpid thread was started


async def test_a_running_child_is_killed_and_reaped() -> None:
    proc = await asyncio.create_subprocess_exec("sleep", "300")
    await asyncio.sleep(0)
    proc.kill()
    assert await asyncio.wait_for(proc.wait(), 30) == -9
    with pytest.raises(ChildProcessError):
        os.waitpid(proc.pid, os.WNOHANG)  # reaped: no zombie left


def test_loops_in_several_threads_each_watch_their_own_children() -> None:
    results: dict[int, list[int]] = {}
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        try:
            results[n] = asyncio.run(_many(n))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not errors
    assert results == {n: [n * 10 + i for i in range(10)] for n in range(3)}


async def _many(n: int) -> list[int]:
    return list(await asyncio.gather(*(_exit_code("sh", "-c", f"exit {n * 10 + i}") for i in range(10))))


def test_removing_a_handler_closes_its_pidfd() -> None:
    async def scenario() -> None:
        watcher = LoopPidfdWatcher()
        proc = await asyncio.create_subprocess_exec("sleep", "300")
        seen: list[int] = []
        watcher.add_child_handler(proc.pid, lambda pid, code: seen.append(code))
        fds = len(os.listdir("/proc/self/fd"))
        assert watcher.remove_child_handler(proc.pid)
        assert not watcher.remove_child_handler(proc.pid)
        assert len(os.listdir("/proc/self/fd")) == fds - 1
        proc.kill()
        assert await asyncio.wait_for(proc.wait(), 30) == -9  # the policy's watcher still reaps it
        assert seen == []

    asyncio.run(scenario())


@pytest.mark.skipif(os.environ.get("CI") != "true" and os.geteuid() != 0, reason="needs root (job cgroups)")
async def test_the_process_runtime_runs_times_out_and_cancels_on_pidfds(tmp_path: Path) -> None:
    rt = ProcessRuntime(instance_name=f"test-{uuid.uuid4().hex[:8]}", work_dir=tmp_path / "wd",
                        settings=Settings(home=tmp_path / "home"))
    await rt.start()
    make = request_builder(tmp_path)
    try:
        results = await asyncio.gather(*(run(rt, make(f"echo job{i}; exit {i % 3}")) for i in range(8)))
        assert [r.exit_code for r in results] == [i % 3 for i in range(8)]
        assert [r.state for r in results] == ["succeeded" if i % 3 == 0 else "failed" for i in range(8)]
        timed = await run(rt, make("sleep 300", timeout=0.5))
        assert timed.state == "error" and timed.timed_out
        cancel = asyncio.Event()
        req = make("echo up > up; sleep 300")
        task = asyncio.create_task(run(rt, req, cancel))
        for _ in range(3000):
            if (req.io_dir / "up").exists():
                break
            await asyncio.sleep(0.01)
        cancel.set()
        assert (await asyncio.wait_for(task, 60)).state == "cancelled"
        assert _waitpid_threads() == []
    finally:
        await rt.close()
