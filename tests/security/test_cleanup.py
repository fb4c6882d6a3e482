"""Workers clean up after a crash: SIGKILLed workers' cgroups and scratch go, whatever their instance name."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import psutil
from tests.acceptance.harness import RunningServer, job, worker_processes


def _wait_for(predicate: object, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.1)
    raise AssertionError(f"condition not met in {timeout}s")


def _the_worker(home: Path) -> psutil.Process:
    """The server's one worker (a worker's child between fork and exec, e.g. mkfs, briefly looks like one)."""
    deadline = time.monotonic() + 90
    while True:
        found = worker_processes(home)
        if len(found) == 1:
            return found[0]
        assert time.monotonic() < deadline, f"{len(found)} worker processes, not one"
        time.sleep(0.1)


def _recorded_cgroups(work_dir: Path) -> list[Path]:
    record = work_dir / "cgroups"
    return [Path(line) for line in record.read_text().split()] if record.exists() else []


def test_a_restarted_worker_removes_what_sigkilled_workers_left(server: RunningServer) -> None:
    workers_dir = server.home / "worker"
    left: list[tuple[Path, list[Path]]] = []
    for _ in range(2):
        batch_id = server.submit([job("sleep 300", 1)])
        _wait_for(lambda: any(workers_dir.glob("*/jobs/*/vol/io")))  # a job is running
        proc = _the_worker(server.home)
        argv = proc.cmdline()
        name = argv[argv.index("--name") + 1]
        work_dir = workers_dir / name
        cgroups = _recorded_cgroups(work_dir)
        existing = [c for c in cgroups if c.is_dir()]  # oci: container paths exist once a container ran
        assert existing, cgroups
        assert any(any(p.is_dir() for p in c.iterdir()) for c in existing)  # the running job's cgroup
        proc.send_signal(signal.SIGKILL)
        psutil.wait_procs([proc], timeout=30)
        left.append((work_dir, cgroups))
        with server.client() as c:
            c.patch(f"/api/v1/batches/{batch_id}/cancel")
        # The server starts a replacement worker under a new name; it clears the dead ones' leftovers.
        dead = work_dir
        _wait_for(lambda: len(worker_processes(server.home)) == 1 and not dead.exists())  # noqa: B023
    for work_dir, cgroups in left:
        assert not work_dir.exists()
        for cgroup in cgroups:
            assert not cgroup.exists(), f"{cgroup} left behind"
    alive = _the_worker(server.home)
    status = server.wait(server.submit([job("echo still-works", 1)]))
    assert status["state"] == "success", status
    assert len(list(workers_dir.iterdir())) == 1, list(workers_dir.iterdir())
    assert alive.is_running()
