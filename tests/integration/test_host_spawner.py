"""The host runtime's job spawner (runtimes/spawner.py), a real process starting real jobs (root: cgroups).

Checked on the host, not only through results: who the job's parent is, which cgroups it was born in and
the spawner went back from, that nothing it started outlives a cancel, its own death or the worker's.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest
from tests.integration.runtime_support import Make, alive, request_builder, run

from corral.config import Settings
from corral.runtimes.config import JobsConfig
from corral.runtimes.host import HostRuntime
from corral.runtimes.spawner import SPAWNER_GONE, JobSpawner

pytestmark = pytest.mark.skipif(
    os.environ.get("CI") != "true" and os.geteuid() != 0, reason="needs root (job cgroups)"
)


@pytest.fixture
async def runtime(tmp_path: Path) -> AsyncIterator[HostRuntime]:
    rt = HostRuntime(instance_name=f"test-{uuid.uuid4().hex[:8]}", work_dir=tmp_path,
                     settings=Settings(home=tmp_path / "home", jobs=JobsConfig(allow_host_runtime=True)))
    await rt.start()
    assert rt.cgroups is not None, "the host runtime's tests need job cgroups"
    yield rt
    await rt.close()


@pytest.fixture
def make(tmp_path: Path) -> Make:
    return request_builder(tmp_path)


def _cgroups(pid: int | str) -> set[str]:
    return set(Path(f"/proc/{pid}/cgroup").read_text().splitlines())


async def _gone(pid: int, within: float = 5.0) -> bool:
    deadline = time.monotonic() + within
    while alive(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    return not alive(pid)


async def test_the_job_is_the_spawners_child_born_in_its_cgroups(runtime: HostRuntime, make: Make) -> None:
    req = make("echo $PPID; cat /proc/self/cgroup", cores_mcpu=500, memory_bytes=64 << 20)
    result = await run(runtime, req)
    assert result.state == "succeeded", result.error
    spawner = runtime.spawner.pid
    assert spawner is not None and spawner != os.getpid()
    ppid, *cgroup_lines = req.log_path.read_text().splitlines()
    assert int(ppid) == spawner
    mine = _cgroups("self")
    job_lines = {line for line in cgroup_lines if ":memory:" in line or ":cpu," in line}
    assert job_lines and not job_lines & mine, "the job ran in the worker's own cgroups"
    assert _cgroups(spawner) == mine, "the spawner stayed in a job's cgroups"
    assert spawner in [c.pid for c in psutil.Process().children()], "the spawner is not the worker's child"


async def test_every_thread_of_the_spawner_goes_home_after_each_start(
    runtime: HostRuntime, make: Make
) -> None:
    """Jobs one after another and at once: afterwards no thread of the spawner is in a job's cgroups, and
    it holds each of the worker's own `tasks` files open once (opened at its first start, then reused)."""
    for i in range(3):
        result = await run(runtime, make("true", cores_mcpu=250, memory_bytes=64 << 20))
        assert result.state == "succeeded", (i, result.error)
    results = await asyncio.gather(*(run(runtime, make("true", cores_mcpu=250, memory_bytes=64 << 20))
                                     for _ in range(8)))
    assert [r.state for r in results] == ["succeeded"] * 8
    spawner = runtime.spawner.pid
    assert spawner is not None
    mine = _cgroups("self")
    tids = os.listdir(f"/proc/{spawner}/task")
    assert len(tids) > 1, "no starter thread seen"
    for tid in tids:
        assert _cgroups(f"{spawner}/task/{tid}") == mine, f"spawner thread {tid} stayed in a job's cgroups"
    open_tasks = [os.readlink(f"/proc/{spawner}/fd/{fd}") for fd in os.listdir(f"/proc/{spawner}/fd")]
    open_tasks = [t for t in open_tasks if t.endswith("/tasks")]
    assert open_tasks and len(open_tasks) == len(set(open_tasks)), open_tasks
    homes = {line.split(":", 2)[2] for line in mine}
    home_files = [t for t in open_tasks if any(t.endswith(f"{h.rstrip('/')}/tasks") for h in homes)]
    assert home_files == open_tasks, (open_tasks, homes)


async def test_a_job_cgroup_killed_while_a_spawner_thread_sits_in_it_spares_the_spawner(
    runtime: HostRuntime, make: Make
) -> None:
    """On v1 a starter thread of the spawner joins the job's cgroups to start the job, so cgroup.procs
    lists the spawner's pid meanwhile; a job cancelled in that moment has its cgroup killed. Made here on
    purpose (the spawner's main thread put in a job cgroup beside a job's process): the kill takes the
    job's process, the spawner lives and starts the next job."""
    from corral.runtimes.cgroups import Limits, join_cgroups, write_file

    assert (await run(runtime, make("true", cores_mcpu=250, memory_bytes=64 << 20))).state == "succeeded"
    spawner = runtime.spawner.pid
    assert spawner is not None and runtime.cgroups is not None
    group = runtime.cgroups.create(f"spare-{uuid.uuid4().hex[:8]}", Limits(64 << 20, 250))
    entry = group.thread_entry
    assert entry is not None, "the test bed's cgroups are v1: a thread joins a job's cgroup alone"
    job = subprocess.Popen(["sleep", "60"])
    try:
        join_cgroups(group.procs_files, [job.pid])
        for tasks in entry.enter:
            write_file(tasks, str(spawner))  # the spawner's main thread, alone, into the job's cgroups
        listed = {int(p) for f in group.procs_files for p in f.read_text().split()}
        assert {spawner, job.pid} <= listed, "the kernel does not list the spawner: nothing is tested"
        assert set(group.pids()) == {job.pid}, "the job's cgroup lists the spawner as one of the job's"
        group.kill()
        assert job.wait(5) == -signal.SIGKILL
        await asyncio.sleep(0.2)
        assert alive(spawner), "killing the job's cgroup killed the worker's job spawner"
    finally:
        for tasks in entry.home:
            write_file(tasks, str(spawner))
        if job.poll() is None:
            job.kill()
            job.wait()
    assert group.remove()
    result = await run(runtime, make("true", cores_mcpu=250, memory_bytes=64 << 20))
    assert result.state == "succeeded", result.error
    assert runtime.spawner.pid == spawner, "the spawner was replaced: the first one died"


async def test_exit_codes_signals_and_starts_that_fail(runtime: HostRuntime, make: Make) -> None:
    assert (await run(runtime, make("exit 7"))).exit_code == 7
    killed = await run(runtime, make("kill -TERM $$"))
    assert (killed.state, killed.exit_code) == ("failed", 128 + signal.SIGTERM)
    missing = make(["/nonexistent/corral-no-such-program"])
    result = await run(runtime, missing)
    assert result.state == "error" and "could not start the job" in (result.error or "")
    assert "corral-no-such-program" in (result.error or "")
    assert (await run(runtime, make("true"))).state == "succeeded", "the spawner did not survive a bad start"
    refused = await run(runtime, make(["echo", "nul\0byte"]))  # what Popen itself refuses
    assert refused.state == "error" and "null byte" in (refused.error or ""), refused.error
    assert "Errno" not in (refused.error or ""), refused.error
    assert (await run(runtime, make("true"))).state == "succeeded", "the spawner did not survive a refusal"


async def test_a_job_starts_with_the_signal_dispositions_the_worker_gives_any_child(
    runtime: HostRuntime, make: Make
) -> None:
    """Nothing the spawner ignores or blocks (a Python process ignores SIGPIPE and SIGXFSZ) reaches a job:
    the job's ignored and blocked signals are those any child of the worker starts with (glibc's
    posix_spawn, which GNU make uses, leaves its internal signal 32 ignored in what it starts)."""
    probe = ["grep", "-E", "^(SigIgn|SigBlk)", "/proc/self/status"]
    baseline = subprocess.run(probe, capture_output=True, text=True, check=True).stdout
    req = make(probe)
    assert (await run(runtime, req)).state == "succeeded"
    masks = dict(line.split(":\t") for line in req.log_path.read_text().splitlines())
    assert masks == dict(line.split(":\t") for line in baseline.splitlines())
    for sig in (signal.SIGINT, signal.SIGPIPE, signal.SIGXFSZ, signal.SIGTERM, signal.SIGCHLD):
        assert not int(masks["SigIgn"], 16) & (1 << (sig - 1)), f"{sig!r} is ignored in the job"
    assert int(masks["SigBlk"], 16) == 0


async def test_the_spawners_death_kills_its_jobs_and_the_next_job_gets_a_new_one(
    runtime: HostRuntime, make: Make
) -> None:
    req = make("echo $$ > job.pid; sleep 300")
    task = asyncio.create_task(run(runtime, req))
    pidfile = req.io_dir / "job.pid"
    deadline = time.monotonic() + 20
    while not (pidfile.exists() and pidfile.read_text().strip()) and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    job, first = int(pidfile.read_text()), runtime.spawner.pid
    assert first is not None
    os.kill(first, signal.SIGKILL)
    result = await asyncio.wait_for(task, 20)
    assert result.state == "error" and SPAWNER_GONE in (result.error or "")
    assert await _gone(job), "a job outlived the spawner that started it"
    assert (await run(runtime, make("true"))).state == "succeeded"
    assert runtime.spawner.pid not in (None, first)


async def test_a_start_cancelled_midway_leaves_nothing_running(runtime: HostRuntime, make: Make) -> None:
    spawner = JobSpawner()
    try:
        req = make("sleep 300")
        read, write = os.pipe()
        try:
            task = asyncio.create_task(spawner.spawn(["sleep", "300"], env=dict(os.environ), stdout=write,
                                                     cwd=req.io_dir))
            await asyncio.sleep(0)  # the request is out; its reply is not read yet
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        finally:
            os.close(read)
            os.close(write)
        assert spawner.pid is not None
        helper = psutil.Process(spawner.pid)
        deadline = time.monotonic() + 5
        # The spawner may not have read the request yet (it was started by this very spawn): wait for its
        # reply (the process started, then killed on arrival) before looking for what is left.
        while time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            if spawner.in_flight == 0 and not helper.children():
                break
        assert spawner.in_flight == 0, "the cancelled start was never answered"
        assert not helper.children(), "a cancelled start left its process running"
    finally:
        await spawner.close()


async def test_closing_the_spawner_kills_a_job_whose_start_it_never_answered(tmp_path: Path) -> None:
    """Closed right after a request went out, the worker never reads its reply: the spawner itself kills
    what it started (the worker could not: it never learnt the pid), and leaves nothing running."""
    marker = f"{300 + uuid.uuid4().int % 10_000 / 10_000:.4f}"  # sleep's argument: this test's process

    def left() -> list[psutil.Process]:
        found = []
        for p in psutil.process_iter(["cmdline"]):
            if p.info["cmdline"] == ["sleep", marker]:
                found.append(p)
        return found

    for _ in range(3):
        spawner = JobSpawner()
        read, write = os.pipe()
        try:
            task = asyncio.create_task(spawner.spawn(["sleep", marker], env=dict(os.environ), stdout=write,
                                                     cwd=tmp_path))
            await asyncio.sleep(0)  # the request is out
            helper = spawner.pid
            await spawner.close()  # before its reply could be read
            with pytest.raises(OSError, match="spawner"):
                await task
        finally:
            os.close(read)
            os.close(write)
        assert helper is not None and await _gone(helper)
        deadline = time.monotonic() + 5
        while left() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert left() == [], "the closed spawner left a job it started running"


async def test_close_stops_the_spawner(tmp_path: Path, make: Make) -> None:
    rt = HostRuntime(instance_name=f"test-{uuid.uuid4().hex[:8]}", work_dir=tmp_path,
                     settings=Settings(home=tmp_path / "home", jobs=JobsConfig(allow_host_runtime=True)))
    await rt.start()
    try:
        assert (await run(rt, make("true"))).state == "succeeded"
        spawner = rt.spawner.pid
        assert spawner is not None
    finally:
        await rt.close()
    assert await _gone(spawner)


DIES_WITH_A_JOB = textwrap.dedent("""
    import asyncio, os, sys
    from corral.runtimes.spawner import JobSpawner

    async def main():
        spawner = JobSpawner()
        out = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)
        proc = await spawner.spawn(["sleep", "300"], env={"PATH": os.environ["PATH"]}, stdout=out, cwd=None)
        print(spawner.pid, proc.pid, flush=True)
        await asyncio.sleep(300)

    asyncio.run(main())
""")


async def test_the_spawner_dies_with_its_worker(tmp_path: Path) -> None:
    worker = subprocess.Popen([sys.executable, "-c", DIES_WITH_A_JOB, str(tmp_path / "out")],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert worker.stdout is not None
        spawner, job = (int(x) for x in worker.stdout.readline().split())
        assert alive(spawner) and alive(job)
        worker.kill()
        worker.wait(10)
        assert await _gone(spawner), "the spawner outlived the worker that started it"
    finally:
        worker.kill()
        worker.wait(10)
        if alive(job):
            os.kill(job, signal.SIGKILL)  # the job itself is the next worker's to clean (its cgroups)


async def test_a_start_that_waits_does_not_hold_up_the_next(tmp_path: Path) -> None:
    """Starts run side by side: one held up (here its `enter` file is a FIFO nobody reads yet, as a start
    waits for its child's exec) does not delay another, and each still ends with its own exit code."""
    fifo = tmp_path / "enter"
    os.mkfifo(fifo)
    spawner = JobSpawner()
    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o600)
    env = {"PATH": os.environ["PATH"]}
    try:
        held = asyncio.create_task(spawner.spawn(["sh", "-c", "exit 4"], env=env, stdout=out, cwd=tmp_path,
                                                 enter=[fifo]))
        other = await asyncio.wait_for(spawner.spawn(["sh", "-c", "exit 3"], env=env, stdout=out,
                                                     cwd=tmp_path), 10)
        assert await asyncio.wait_for(other.wait(), 10) == 3
        assert not held.done(), "the held start did not wait for its FIFO"
        reader = os.open(fifo, os.O_RDONLY | os.O_NONBLOCK)  # lets the held start's write through
        try:
            first = await asyncio.wait_for(held, 10)
            assert os.read(reader, 16) == b"0"  # the starting thread asked to join it (CURRENT_THREAD)
        finally:
            os.close(reader)
        assert await asyncio.wait_for(first.wait(), 10) == 4
    finally:
        os.close(out)
        await spawner.close()


async def test_a_burst_of_quick_starts_each_report_their_own_exit(tmp_path: Path) -> None:
    """Jobs that end before their start is even answered: every exit is reported, after its start (a start
    and a reap run on different threads of the spawner), to the right job, and none is left a zombie."""
    spawner = JobSpawner()
    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o600)
    env = {"PATH": os.environ["PATH"]}

    async def one(i: int) -> int:
        proc = await spawner.spawn(["sh", "-c", f"exit {i % 50}"], env=env, stdout=out, cwd=tmp_path)
        return await proc.wait()

    try:
        codes = await asyncio.wait_for(asyncio.gather(*(one(i) for i in range(300))), 120)
        assert codes == [i % 50 for i in range(300)]
        assert spawner.pid is not None
        assert psutil.Process(spawner.pid).children() == [], "the spawner left a child unreaped"
    finally:
        os.close(out)
        await spawner.close()


async def test_a_request_the_spawner_cannot_read_ends_it_rather_than_going_unanswered(tmp_path: Path) -> None:
    """A starter thread's unexpected failure ends the spawner, as one of its main loop would: the worker
    learns it is gone (its jobs killed and reported so) instead of waiting for a reply that never comes."""
    import array
    import pickle
    import socket

    spawner = JobSpawner()
    out = os.open(tmp_path / "out", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        proc = await spawner.spawn(["sleep", "300"], env={"PATH": os.environ["PATH"]}, stdout=out,
                                   cwd=tmp_path)
        helper = spawner.pid
        assert helper is not None and spawner._sock is not None
        spawner._sock.sendmsg([pickle.dumps(("spawn", 10**6), pickle.HIGHEST_PROTOCOL)],
                              [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [out]))])
        assert await asyncio.wait_for(proc.wait(), 10) == -signal.SIGKILL
        assert proc.lost is not None and SPAWNER_GONE in proc.lost
        assert await _gone(proc.pid) and await _gone(helper)
    finally:
        os.close(out)
        await spawner.close()
