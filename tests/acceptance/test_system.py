"""The core's guarantees, end to end: real server process, real worker processes, real sandboxes."""

from __future__ import annotations

import signal
import time
from datetime import datetime
from typing import Any

import psutil
import pytest
from tests.acceptance.billing_check import expected_cost, expected_usage, read_store, store_url
from tests.acceptance.harness import RunningServer, job, worker_processes

pytestmark = pytest.mark.slow


def _ts(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def _attempts(server: RunningServer, batch_id: int, job_id: int) -> list[dict[str, Any]]:
    with server.client() as c:
        r = c.get(f"/api/v1/batches/{batch_id}/jobs/{job_id}/attempts")
        assert r.status_code == 200, r.text
        return list(r.json())


@pytest.mark.parametrize("db_kind", ["sqlite", "postgres"], indirect=True)
def test_dag_runs_parents_before_children(start_server: Any, db_url: str) -> None:
    server = start_server(db_url=db_url)
    jobs = (
        [job("echo root", 1)]
        + [job(f"echo mid {i}", i, [1]) for i in range(2, 6)]
        + [job("echo sink", 6, [2, 3, 4, 5])]
    )
    batch_id = server.submit(jobs)
    status = server.wait(batch_id)
    assert status["state"] == "success" and status["n_succeeded"] == 6
    times = {j: _attempts(server, batch_id, j)[-1] for j in range(1, 7)}
    for child in range(2, 6):
        assert _ts(times[child]["start_time"]) >= _ts(times[1]["end_time"]) - 1e-3
    assert _ts(times[6]["start_time"]) >= max(_ts(times[j]["end_time"]) for j in range(2, 6)) - 1e-3
    with server.client() as c:
        log = c.get(f"/api/v1/batches/{batch_id}/jobs/6/log/main")
    assert log.status_code == 200 and "sink" in log.text


def test_failure_cancels_children_and_always_run_child_still_runs(start_server: Any) -> None:
    server = start_server()
    batch_id = server.submit(
        [
            job("exit 3", 1),
            job("echo never", 2, [1]),
            job("echo cleanup", 3, [1], always_run=True),
            job("echo grandchild", 4, [2]),
        ]
    )
    status = server.wait(batch_id)
    jobs = server.jobs(batch_id)
    assert {j: jobs[j]["state"] for j in jobs} == {1: "Failed", 2: "Cancelled", 3: "Success", 4: "Cancelled"}
    assert jobs[1]["exit_code"] == 3
    assert status["state"] == "failure"
    assert (status["n_failed"], status["n_cancelled"], status["n_succeeded"]) == (1, 2, 1)


def test_cancel_running_batch_kills_jobs_but_runs_always_run(start_server: Any) -> None:
    server = start_server()
    batch_id = server.submit(
        [job("sleep 120", 1), job("sleep 120", 2), job("echo after", 3, [1, 2], always_run=True)]
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        running = [j for j in server.jobs(batch_id).values() if j["state"] == "Running"]
        if len(running) == 2 and _sleepers(server):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("jobs never started")
    with server.client() as c:
        assert c.patch(f"/api/v1/batches/{batch_id}/cancel").status_code in (200, 204)
    status = server.wait(batch_id, timeout=30)
    jobs = server.jobs(batch_id)
    assert [jobs[j]["state"] for j in (1, 2, 3)] == ["Cancelled", "Cancelled", "Success"]
    assert status["state"] == "cancelled"
    deadline = time.monotonic() + 10
    while _sleepers(server) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _sleepers(server), "cancelled jobs' processes are still alive"


def _sleepers(server: RunningServer) -> list[psutil.Process]:
    out = []
    for worker in worker_processes(server.home):
        for child in worker.children(recursive=True):
            try:
                if child.cmdline()[:2] == ["sleep", "120"]:
                    out.append(child)
            except psutil.NoSuchProcess:
                pass
    return out


def test_timeout_ends_the_job_in_error(start_server: Any) -> None:
    server = start_server()
    batch_id = server.submit([job("sleep 60", 1, timeout=1)])
    server.wait(batch_id, timeout=30)
    detail = server.job(batch_id, 1)
    assert detail["state"] == "Error"
    assert detail["status"]["timed_out"] is True


def test_memory_limit_fails_the_job_as_out_of_memory(start_server: Any) -> None:
    server = start_server()
    hog = 'python3 -c "x = bytearray(400 * 1024 * 1024); print(len(x))"'
    batch_id = server.submit([job(hog, 1, memory="64Mi")])
    server.wait(batch_id, timeout=60)
    detail = server.job(batch_id, 1)
    assert detail["state"] == "Failed"
    assert detail["status"]["out_of_memory"] is True


def test_cost_is_the_cores_used_times_the_rate_rolled_up_to_the_batch(start_server: Any) -> None:
    server = start_server(cost_per_core_hour=3600.0)  # the older setting: one unit per core-second
    batch_id = server.submit([job("sleep 0.5", 1, cpu="1"), job("sleep 0.2", 2, cpu="0.5")])
    status = server.wait(batch_id)
    stored = read_store(store_url(server.home, None), batch_id)
    rates = {"cpu/site/1": "3600", "memory/site/1": "0"}
    jobs = [server.job(batch_id, j) for j in (1, 2)]
    for detail in jobs:
        assert detail["state"] == "Success", detail
        mine = [a for a in stored["attempts"] if a.job_id == detail["job_id"]]
        assert detail["cost"] == float(expected_cost(expected_usage(mine), rates))
    assert jobs[0]["cost"] >= 0.5  # 1 core for at least the 0.5 s the job slept
    assert jobs[1]["cost"] >= 0.1  # half a core for at least 0.2 s
    assert status["cost"] == float(expected_cost(expected_usage(stored["attempts"]), rates))


def _command(proc: psutil.Process) -> list[str]:
    """A child's argv, or [] when it ended meanwhile (short-lived helpers come and go)."""
    try:
        return proc.cmdline()
    except (psutil.NoSuchProcess, psutil.ZombieProcess):
        return []


def test_killed_worker_job_is_retried_on_another_worker(start_server: Any) -> None:
    server = start_server(local_workers=2, cores=1)
    batch_id = server.submit([job("sleep 4; echo done", 1, cpu="1")])
    victim = None
    deadline = time.monotonic() + 30
    while victim is None and time.monotonic() < deadline:
        for worker in worker_processes(server.home):
            if any(_command(c)[:1] == ["sleep"] for c in worker.children(recursive=True)):
                victim = worker
        time.sleep(0.1)
    assert victim is not None, "the job never started"
    victim.send_signal(signal.SIGKILL)
    status = server.wait(batch_id, timeout=60)
    assert status["state"] == "success"
    attempts = _attempts(server, batch_id, 1)
    assert len(attempts) == 2
    assert attempts[0]["reason"] == "lost" and attempts[1]["reason"] == "success"
    assert attempts[0]["instance_name"] != attempts[1]["instance_name"]


@pytest.mark.parametrize("db_kind", ["sqlite", "postgres"], indirect=True)
def test_server_killed_mid_batch_restarts_and_finishes(start_server: Any, db_url: str) -> None:
    server = start_server(db_url=db_url, cores=2)
    n = 40
    jobs = [job(f"sleep 0.{i % 5}; echo {i}", i) for i in range(1, n)] + [
        job("echo sink", n, list(range(1, n)))
    ]
    batch_id = server.submit(jobs)
    while server.batch(batch_id)["n_completed"] < 8:
        time.sleep(0.05)
    server.kill(signal.SIGKILL)
    time.sleep(1.0)  # workers keep running their jobs and keep retrying their reports
    server.start()
    status = server.wait(batch_id, timeout=120)
    assert status["state"] == "success", status
    assert (status["n_jobs"], status["n_completed"], status["n_succeeded"]) == (n, n, n)
    jobs_now = server.jobs(batch_id)
    assert all(j["state"] == "Success" for j in jobs_now.values())
    # Nothing ran twice to success: every job has exactly one successful attempt.
    for job_id in (1, 2, 3, n):
        reasons = [a["reason"] for a in _attempts(server, batch_id, job_id)]
        assert reasons.count("success") == 1, reasons


def test_two_users_competing_for_one_pool_get_equal_shares(start_server: Any) -> None:
    server = start_server(cores=2)
    with server.client(server.admin_token) as c:
        bob = c.post("/api/v1/users", json={"name": "bob"}).json()["token"]
        assert c.post("/api/v1/billing-projects/default/users/bob").status_code in (200, 201, 204)
    # Fill the pool so both users' jobs queue up before any of them can start.
    blocker = server.submit([job("sleep 2", 1, cpu="2")], token=server.admin_token)
    while server.jobs(blocker)[1]["state"] != "Running":
        time.sleep(0.05)
    n = 48
    work = [job("sleep 0.3", i) for i in range(1, n + 1)]
    alice_batch = server.submit(work)
    bob_batch = server.submit(work, token=bob)
    # Whoever finished first, the other must have done about as much (within 10%).
    done = sorted(server.completed_when_first_finishes(alice_batch, bob_batch))
    assert done[0] >= 0.9 * done[1], done


def test_create_is_idempotent_on_token(start_server: Any) -> None:
    server = start_server()
    spec = {"billing_project": "default", "token": "same-token", "n_jobs": 1}
    with server.client() as c:
        first = c.post("/api/v1/batches/create-fast", json={"batch": spec, "bunch": [job("true", 1)]})
        second = c.post("/api/v1/batches/create-fast", json={"batch": spec, "bunch": [job("true", 1)]})
    assert first.status_code == second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    status = server.wait(first.json()["id"])
    assert status["n_jobs"] == 1


def test_auth_isolation(start_server: Any) -> None:
    server = start_server(local_workers=0)
    batch_id = server.submit([job("true", 1)])
    with server.client(server.admin_token) as c:
        carol = c.post("/api/v1/users", json={"name": "carol"}).json()["token"]
        c.post("/api/v1/billing-projects", json={"name": "secret"})
    with server.client("not-a-token") as c:
        assert c.get(f"/api/v1/batches/{batch_id}").status_code == 401
    with server.client(carol) as c:
        assert c.get(f"/api/v1/batches/{batch_id}").status_code == 404
        r = c.post(
            "/api/v1/batches/create-fast",
            json={
                "batch": {"billing_project": "secret", "token": "x", "n_jobs": 1},
                "bunch": [job("true", 1)],
            },
        )
        assert r.status_code == 403
