"""Instances on SSH hosts (real sshd, loopback and network namespaces): pools, loss, shares, GPUs."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tests.acceptance.harness import RunningServer, job
from tests.acceptance.sshbed import SshTestbed, collections_toml

FAST_SSH = {
    "keepalive_interval": 1.0,
    "keepalive_count_max": 3,
    "connect_timeout": 5.0,
    "host_retry_seconds": 20.0,
}


def pool(name: str, hosts: list[dict[str, Any]], *, cores: float = 1, **extra: Any) -> dict[str, Any]:
    shape = {"cores": cores, "memory": "256Mi", **extra.pop("shape", {})}
    return {
        "name": name,
        "kind": "pool",
        "provider": "ssh",
        "shape": shape,
        "min_instances": 0,
        "max_instances": 4,
        "max_new_instances_per_loop": 4,
        "idle_seconds": 3.0,
        "provider_options": {"hosts": hosts, **FAST_SSH},
        **extra,
    }


def serve(
    start_server: Any, tmp_path: Path, collections: list[dict[str, Any]], **settings: Any
) -> RunningServer:
    config = tmp_path / "corral.toml"
    config.write_text(collections_toml(collections))
    return start_server(local_workers=0, config=str(config), heartbeat_timeout=10, **settings)  # type: ignore[no-any-return]


def store(server: RunningServer, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(server.home / "corral.db", timeout=30) as db:
        return list(db.execute(query, args))


def live_instances(server: RunningServer, collection: str) -> list[tuple[Any, ...]]:
    return store(
        server,
        "SELECT name, state FROM instances WHERE collection = ? AND state IN ('pending', 'active')",
        collection,
    )


def wait_for(what: str, check: Callable[[], bool], server: RunningServer, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}: not after {timeout}s\n{server.log_tail(80)}")


def test_an_ssh_pool_scales_from_zero_to_serve_a_batch_and_back_to_zero(
    start_server: Any, tmp_path: Path, ssh_testbed: SshTestbed
) -> None:
    hosts = [
        ssh_testbed.loopback_host("lb1", cores=2, memory="2Gi"),
        ssh_testbed.loopback_host("lb2", cores=2, memory="2Gi"),
    ]
    server = serve(start_server, tmp_path, [pool("lab", hosts)], pool="lab")
    time.sleep(1.5)  # a few autoscaler loops with nothing to do
    assert live_instances(server, "lab") == []
    batch_id = server.submit([job("sleep 1; echo ok", i, cpu="1") for i in range(1, 13)])
    status = server.wait(batch_id, timeout=300)
    assert status["state"] == "success", status
    used = store(
        server,
        "SELECT DISTINCT a.instance_name, i.metadata FROM attempts a JOIN instances i "
        "ON i.name = a.instance_name WHERE a.batch_id = ?",
        batch_id,
    )
    assert 2 <= len(used) <= 4, used  # it scaled out, within max_instances
    assert {json.loads(m)["host"] for _, m in used} <= {"lb1", "lb2"}, used
    wait_for("every idle instance released", lambda: live_instances(server, "lab") == [], server, 60)

    def states() -> set[str]:
        return {s for (s,) in store(server, "SELECT state FROM instances WHERE collection = 'lab'")}

    wait_for("every released instance deleted", lambda: states() == {"deleted"}, server, 60)
    # Never more instances asked for than the two hosts hold (no create-and-fail churn).
    assert len(store(server, "SELECT name FROM instances WHERE collection = 'lab'")) <= 4


def test_a_host_cut_off_mid_job_loses_the_attempt_and_the_job_finishes_elsewhere(
    start_server: Any, tmp_path: Path, ssh_testbed: SshTestbed
) -> None:
    hosts = [
        ssh_testbed.namespace_host("h1", cores=1, memory="1Gi"),
        ssh_testbed.namespace_host("h2", cores=1, memory="1Gi"),
    ]
    server = serve(start_server, tmp_path, [pool("ns", hosts, max_instances=2, idle_seconds=60)], pool="ns")
    batch_id = server.submit([job("sleep 6", i, cpu="1") for i in (1, 2)])

    def running_on_h1() -> list[tuple[Any, ...]]:
        return store(
            server,
            "SELECT a.job_id, a.instance_name FROM attempts a JOIN instances i ON "
            "i.name = a.instance_name WHERE a.batch_id = ? AND a.time_started IS NOT NULL AND "
            "a.state = 'running' AND json_extract(i.metadata, '$.host') = 'h1'",
            batch_id,
        )

    wait_for("a job running on h1", lambda: bool(running_on_h1()), server, 300)
    ((job_on_h1, instance_on_h1),) = running_on_h1()
    ssh_testbed.cut("h1")
    cut_at = time.time()
    try:
        status = server.wait(batch_id, timeout=180)
    finally:
        ssh_testbed.restore("h1")
    assert status["state"] == "success", status
    attempts = store(
        server,
        "SELECT instance_name, end_reason FROM attempts WHERE batch_id = ? AND job_id = ? "
        "ORDER BY attempt_id",
        batch_id,
        job_on_h1,
    )
    assert attempts[0] == (instance_on_h1, "lost"), attempts
    assert attempts[-1][1] == "success" and attempts[-1][0] != instance_on_h1, attempts
    ((lost_at,),) = store(server, "SELECT time_ended FROM attempts WHERE batch_id = ? AND job_id = ? AND "
                          "end_reason = 'lost'", batch_id, job_on_h1)
    print(f"host cut -> attempt lost in {lost_at - cut_at:.1f}s")  # keepalive 1 s x 3


def test_two_users_on_a_constrained_ssh_pool_get_equal_shares(
    start_server: Any, tmp_path: Path, ssh_testbed: SshTestbed
) -> None:
    hosts = [
        ssh_testbed.loopback_host("lb1", cores=1, memory="1Gi"),
        ssh_testbed.loopback_host("lb2", cores=1, memory="1Gi"),
    ]
    server = serve(
        start_server, tmp_path, [pool("pair", hosts, max_instances=2, idle_seconds=30)], pool="pair"
    )
    with server.client(server.admin_token) as c:
        bob = c.post("/api/v1/users", json={"name": "bob"}).json()["token"]
        assert c.post("/api/v1/billing-projects/default/users/bob").status_code in (200, 201, 204)
    # The pool is at 0: both users' jobs are queued before the first instance comes up.
    work = [job("sleep 0.3", i, cpu="1") for i in range(1, 31)]
    alice_batch = server.submit(work)
    bob_batch = server.submit(work, token=bob)
    done = sorted(server.completed_when_first_finishes(alice_batch, bob_batch))
    assert done[0] >= 0.9 * done[1], done


def test_gpu_jobs_see_only_their_assigned_devices(
    start_server: Any, tmp_path: Path, ssh_testbed: SshTestbed
) -> None:
    hosts = [ssh_testbed.loopback_host("gpubox", cores=4, memory="2Gi", gpus=4, gpu_type="t4")]
    gpu_pool = pool("gpu", hosts, shape={"gpus": 2, "gpu_type": "t4"}, cores=2, max_instances=2)
    server = serve(start_server, tmp_path, [gpu_pool], pool="gpu")
    show = 'echo "[$CUDA_VISIBLE_DEVICES]"'
    one_gpu = {"cpu": "0.5", "memory": "64Mi", "gpus": 1, "gpu_type": "t4"}
    jobs = [job(f"{show}; sleep 1", i, resources=one_gpu) for i in range(1, 5)]
    jobs.append(job(show, 5, resources={"cpu": "0.5", "memory": "64Mi", "gpus": 2}))
    jobs.append(job(show, 6, resources={"cpu": "0.5", "memory": "64Mi"}))
    batch_id = server.submit(jobs)
    assert server.wait(batch_id, timeout=300)["state"] == "success"
    with server.client() as c:
        logs = {i: c.get(f"/api/v1/batches/{batch_id}/jobs/{i}/log").json() for i in range(1, 7)}
    seen = {i: log["main"].strip() for i, log in logs.items()}
    for i in range(1, 5):
        assert seen[i] in {"[0]", "[1]", "[2]", "[3]"}, seen
    assert seen[5] in {"[0,1]", "[2,3]"}, seen  # both devices of one instance
    assert seen[6] == "[]", seen  # a job without GPUs sees none
    devices = {m for (m,) in store(server, "SELECT metadata FROM instances WHERE collection = 'gpu'")}
    assert all(json.loads(m)["gpu_ids"] in (["0", "1"], ["2", "3"]) for m in devices), devices


def test_a_job_that_fits_no_pool_gets_its_own_instance_deleted_when_it_ends(
    start_server: Any, tmp_path: Path, ssh_testbed: SshTestbed
) -> None:
    small = pool("lab", [ssh_testbed.loopback_host("lb1", cores=1, memory="1Gi")], max_instances=1)
    private = {
        "name": "big",
        "kind": "job_private",
        "provider": "ssh",
        "max_instances": 2,
        "provider_options": {
            "hosts": [ssh_testbed.loopback_host("bigbox", cores=4, memory="4Gi")],
            **FAST_SSH,
        },
    }
    server = serve(start_server, tmp_path, [small, private], pool="lab")
    batch_id = server.submit([job("echo small", 1, cpu="1"), job("echo big", 2, cpu="3")])
    assert server.wait(batch_id, timeout=300)["state"] == "success"
    rows = store(
        server,
        "SELECT a.job_id, i.collection, i.reserved_for, i.cores_mcpu FROM attempts a JOIN "
        "instances i ON i.name = a.instance_name WHERE a.batch_id = ? ORDER BY a.job_id",
        batch_id,
    )
    assert rows[0][1] == "lab"
    assert rows[1][1:] == ("big", f"{batch_id}.2", 3000), rows
    wait_for("the job-private instance deleted", lambda: live_instances(server, "big") == [], server, 60)


def test_a_server_killed_mid_batch_restarts_and_the_batch_finishes_on_new_instances(
    start_server: Any, tmp_path: Path, ssh_testbed: SshTestbed
) -> None:
    hosts = [ssh_testbed.loopback_host("lb1", cores=1, memory="1Gi"),
             ssh_testbed.loopback_host("lb2", cores=1, memory="1Gi")]
    server = serve(start_server, tmp_path, [pool("crash", hosts, max_instances=2, idle_seconds=30)],
                   pool="crash")
    batch_id = server.submit([job("sleep 3", i, cpu="1") for i in range(1, 5)])

    def running() -> list[tuple[Any, ...]]:
        return store(server, "SELECT job_id, instance_name FROM attempts WHERE batch_id = ? AND state = "
                     "'running' AND time_started IS NOT NULL", batch_id)

    wait_for("two jobs running", lambda: len(running()) == 2, server, 300)
    before = {name for _, name in running()}
    server.kill()  # SIGKILL: the SSH connections drop, and with them the workers
    server.start()
    status = server.wait(batch_id, timeout=300)
    assert status["state"] == "success", status
    lost = store(server, "SELECT instance_name FROM attempts WHERE batch_id = ? AND end_reason = 'lost'",
                 batch_id)
    assert {name for (name,) in lost} == before  # the attempts that were running are recorded lost
    later = store(server, "SELECT DISTINCT instance_name FROM attempts WHERE batch_id = ? AND end_reason = "
                  "'success'", batch_id)
    assert {name for (name,) in later}.isdisjoint(before)  # and their jobs finished on new instances
    wait_for("the old instances deleted", lambda: all(
        s == "deleted" for (s,) in store(server, "SELECT state FROM instances WHERE name IN (?, ?)", *before)
    ), server, 60)
