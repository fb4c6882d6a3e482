"""`pool_choice = "cheapest"` on a real server with two SSH pools of different prices (real sshd on
loopback): a job naming no pool goes to the cheapest pool that can take it, one too big for that pool goes
to the other and says why while it waits there, one that fits no pool is refused at submission."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from tests.acceptance.harness import job
from tests.acceptance.sshbed import SshTestbed
from tests.acceptance.test_ssh_pools import FAST_SSH, serve, store, wait_for


def ssh_pool(name: str, host: dict[str, Any], *, cores: float, memory: str, price: float) -> dict[str, Any]:
    return {
        "name": name,
        "kind": "pool",
        "provider": "ssh",
        "shape": {"cores": cores, "memory": memory, "price_per_hour": price},
        "min_instances": 0,
        "max_instances": 1,
        "idle_seconds": 3.0,
        "startup_seconds": 5.0,  # both come up equally soon: price decides
        "provider_options": {"hosts": [host], **FAST_SSH},
    }


def test_jobs_naming_no_pool_go_to_the_cheapest_pool_that_can_run_them(
    start_server: Any, tmp_path: Path, ssh_testbed: SshTestbed
) -> None:
    cheap = ssh_pool("cheap", ssh_testbed.loopback_host("lb-cheap", cores=1, memory="1Gi"),
                     cores=1, memory="256Mi", price=0.05)
    big = ssh_pool("big", ssh_testbed.loopback_host("lb-big", cores=2, memory="2Gi"),
                   cores=2, memory="512Mi", price=0.50)
    # The expensive pool is the default one: a job that goes to `cheap` was routed there.
    server = serve(start_server, tmp_path, [big, cheap], pool="big", pool_choice="cheapest")

    # Fits no pool (4 cores): refused before anything is stored, naming the job and what it asks for.
    with server.client() as c:
        spec = {"billing_project": "default", "token": uuid.uuid4().hex, "n_jobs": 1}
        r = c.post("/api/v1/batches/create-fast",
                   json={"batch": spec, "bunch": [job("true", 1, cpu="4")]})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "bunch[0].resources", r.text
    message = r.json()["message"]
    assert "needs 4 cores and 64 MiB and names no pool" in message, message
    assert "pool big" in message and "pool cheap" in message, message
    assert store(server, "SELECT count(*) FROM jobs") == [(0,)]

    batch_id = server.submit([
        job("echo small", 1, cpu="0.5", memory="64Mi"),
        job("sleep 8; echo wide", 2, cpu="2", memory="64Mi"),  # too wide for cheap: big
        job("echo wide too", 3, cpu="2", memory="64Mi"),  # waits in big for job 2's cores
    ])

    def waiting_reasons() -> dict[int, str]:
        jobs = server.jobs(batch_id)
        return {
            j: s["waiting_reason"] for j, s in jobs.items() if s["state"] == "Ready" and s["waiting_reason"]
        }

    seen: dict[int, str] = {}

    def a_wide_job_says_why_it_waits_in_big() -> bool:
        seen.update(waiting_reasons())
        return 2 in seen or 3 in seen or server.batch(batch_id)["complete"]

    wait_for("a wide job waiting with its reason", a_wide_job_says_why_it_waits_in_big, server, timeout=240)
    status = server.wait(batch_id, timeout=300)
    assert status["state"] == "success", status
    reason = seen.get(3) or seen.get(2)
    assert reason is not None, f"no waiting_reason seen for the wide jobs: {seen}"
    assert "sent to pool big" in reason and "cheap is too small (1 core and 256 MiB)" in reason, reason

    ran_on = dict(store(
        server,
        "SELECT a.job_id, i.collection FROM attempts a JOIN instances i ON i.name = a.instance_name "
        "WHERE a.batch_id = ? AND a.end_reason = 'success'", batch_id,
    ))
    assert ran_on == {1: "cheap", 2: "big", 3: "big"}, ran_on
    assert all(s["waiting_reason"] is None for s in server.jobs(batch_id).values())

