"""A real `corral server` whose pool is rented from the fake vast.ai: a batch completes through injected
failures, hosts lost mid-job, a SIGKILLed server; nothing is left rented."""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.acceptance.harness import RunningServer, job
from tests.acceptance.sshbed import collections_toml
from tests.fakes.vastai.process import FakeVastProcess
from tests.vastai.conftest import Blocks, collection_config

pytestmark = pytest.mark.slow


def store(server: RunningServer, query: str, *args: Any) -> list[tuple[Any, ...]]:
    with sqlite3.connect(server.home / "corral.db", timeout=30) as db:
        return list(db.execute(query, args))


def wait_for(what: str, check: Callable[[], Any], server: RunningServer, timeout: float = 180.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"{what}: not after {timeout}s\n{server.log_tail(80)}")


def peak_spend(rows: list[dict[str, Any]]) -> float:
    """The most $/h the instances cost at any moment (from the fake's ledger)."""
    events = sorted(
        [(r["created"], r["dph"]) for r in rows]
        + [(r["destroyed_at"] or float("inf"), -r["dph"]) for r in rows]
    )
    peak = spent = 0.0
    for _, delta in events:
        spent += delta
        peak = max(peak, spent)
    return peak


@pytest.fixture
def vast_server(
    tmp_path: Path, fake_vast: FakeVastProcess, client_key: Path, vast_work_dir: Path, wheelhouse: Path
) -> Iterator[Callable[..., RunningServer]]:
    (client_key.parent / "api_key").write_text(fake_vast.api_key + "\n")
    servers: list[RunningServer] = []

    def start(
        machines: list[int],
        *,
        home: Path | None = None,
        collections: list[dict[str, Any]] | None = None,
        local_workers: int = 0,
        pool: str = "gpu",
        **options: Any,
    ) -> RunningServer:
        col = collection_config(
            fake_vast, client_key, vast_work_dir, machines, worker_wheelhouse=str(wheelhouse), **options
        )
        col.update({"max_instances": 3, "max_new_instances_per_loop": 3, "idle_seconds": 4})
        config = tmp_path / f"corral{len(servers)}.toml"
        config.write_text(collections_toml([col, *(collections or [])]))
        home = home or tmp_path / f"home{len(servers)}"
        home.mkdir(exist_ok=True)
        env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
        env.update(
            {
                "CORRAL_HOME": str(home),
                "CORRAL_PORT": "0",
                "CORRAL_URL_FILE": str(home / "server.url"),
                "CORRAL_LOCAL_WORKERS": str(local_workers),
                "CORRAL_POOL": pool,
                "CORRAL_CONFIG": str(config),
                "CORRAL_HEARTBEAT_INTERVAL": "0.5",
                "CORRAL_HEARTBEAT_TIMEOUT": "20",
            }
        )
        server = RunningServer(home, env)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.stop()


def attempts(server: RunningServer, batch_id: int) -> list[tuple[Any, ...]]:
    return store(
        server,
        "SELECT a.job_id, a.instance_name, a.end_reason, i.metadata FROM attempts a JOIN "
        "instances i ON i.name = a.instance_name WHERE a.batch_id = ? ORDER BY a.job_id, a.attempt_id",
        batch_id,
    )


def running_on(server: RunningServer, batch_id: int) -> dict[int, int]:
    """vast instance id -> job id, for attempts running now."""
    rows = store(
        server,
        "SELECT a.job_id, i.metadata FROM attempts a JOIN instances i ON i.name = a.instance_name "
        "WHERE a.batch_id = ? AND a.state = 'running' AND a.time_started IS NOT NULL",
        batch_id,
    )
    return {int(json.loads(m).get("vast_id", 0)): j for j, m in rows if json.loads(m).get("vast_id")}


def test_a_batch_completes_through_every_injected_failure_and_nothing_is_left_rented(
    vast_server: Callable[..., RunningServer], fake_vast: FakeVastProcess
) -> None:
    machines = Blocks.take() + Blocks.take()[8:]  # the 8 cheapest are faulty; lost hosts are not re-rented
    faults = [
        "offer_gone",
        "double_rent",
        "oci_error",
        "ssh_close",
        "wrong_gpu_count",
        "nvml_failure",
        "cuda_broken",
        "bid_too_low",
    ]
    fake_vast.faults(machines={str(m): [f] for m, f in zip(machines, faults, strict=False)})
    cap = 1.0  # $/h: three of the $0.38-0.39 hosts would pass it
    server = vast_server(
        machines,
        interruptible=True,
        bid_margin=1.2,
        max_total_per_hour=cap,
        prepare={"import_torch": True, "cuda": True},
        running_deadline=5.0,
        ssh_deadline=5.0,
    )
    batch_id = server.submit([job("sleep 8; echo done-$RANDOM", i, cpu="1") for i in range(1, 5)])
    busy = wait_for(
        "jobs running on two rented hosts",
        lambda: len(running_on(server, batch_id)) >= 2 and running_on(server, batch_id),
        server,
        300,
    )
    (offline, _), (preempted, _) = list(busy.items())[:2]
    fake_vast.control(f"instances/{offline}/offline")
    fake_vast.control(f"instances/{preempted}/preempt")
    status = server.wait(batch_id, timeout=400)
    assert status["state"] == "success", (status, server.log_tail(60))
    reasons = {json.loads(m)["vast_id"]: r for _, _, r, m in attempts(server, batch_id)}
    assert reasons[offline] == "lost" and reasons[preempted] == "lost", reasons
    used = {json.loads(m)["machine_id"] for _, _, r, m in attempts(server, batch_id) if r == "success"}
    assert used.isdisjoint(machines[: len(faults)])  # every faulty machine was passed over
    label = "corral:gpu:"
    wait_for("every rented instance destroyed", lambda: fake_vast.live(label) == [], server, 120)
    rows = [
        r
        for r in fake_vast.ledger()["instances"]
        if (r["label"] or "").startswith(label) and r["machine_id"] in machines
    ]
    faulty = {r["machine_id"] for r in rows} & set(machines[: len(faults)])
    assert len(faulty) >= 6, rows  # the faulty hosts were really rented and destroyed (not just skipped)
    assert peak_spend(rows) <= cap + 1e-9
    log = server.log.read_text()
    assert fake_vast.api_key not in log  # the key is never logged
    failed = store(server, "SELECT name FROM instances WHERE metadata LIKE '%\"failures\"%'")
    worked = store(
        server,
        "SELECT DISTINCT instance_name FROM attempts WHERE batch_id = ? AND end_reason = 'success'",
        batch_id,
    )
    with server.client() as c:
        why = c.get(f"/api/v1/instances/{failed[0][0]}/health").json()
        assert why["state"] == "deleted" and "machine" in why["failure"], why  # visible after it went
        health = c.get(f"/api/v1/instances/{worked[0][0]}/health").json()
        assert health["prepare"]["ok"] and health["history"], health
        assert health["history"][-1]["gpus"][0]["name"] == "RTX 4090"
        assert c.get("/api/v1/instances/no-such/health").status_code == 404


def test_a_sigkilled_server_adopts_its_rented_hosts_on_restart(
    vast_server: Callable[..., RunningServer], fake_vast: FakeVastProcess
) -> None:
    machines = Blocks.take()
    server = vast_server(machines)
    batch_id = server.submit([job("sleep 12; echo survived", i, cpu="1") for i in (1, 2)])
    busy = wait_for(
        "both jobs running",
        lambda: len(running_on(server, batch_id)) == 2 and running_on(server, batch_id),
        server,
        300,
    )
    rented_before = {r["id"] for r in fake_vast.live("corral:gpu:")}
    server.kill()
    restarted = RunningServer(server.home, server.env)
    restarted.start()
    try:
        status = restarted.wait(batch_id, timeout=240)
        assert status["state"] == "success", (status, restarted.log_tail(60))
        rows = attempts(restarted, batch_id)
        assert [r for _, _, r, _ in rows] == ["success", "success"], rows  # nothing lost: adopted, not rerun
        assert {json.loads(m)["vast_id"] for *_, m in rows} == set(busy)
        assert "adopted instance" in restarted.log.read_text()
        costs = store(
            restarted,
            "SELECT j.msec_mcpu, j.cost, i.metadata FROM jobs j JOIN attempts a ON "
            "a.batch_id = j.batch_id AND a.job_id = j.job_id JOIN instances i ON i.name = a.instance_name "
            "WHERE j.batch_id = ?",
            batch_id,
        )
        for msec_mcpu, cost, meta in costs:  # each attempt charged at its host's own price (1-core shape)
            price = json.loads(meta)["price_per_hour"]
            # The ledger charges whole milliseconds of each accrual slice (docs/billing.md): a few ms at most.
            slack = price / 3600 * 0.005
            assert msec_mcpu > 0 and abs(cost - msec_mcpu / 1e6 / 3600 * price) <= slack, (
                cost,
                msec_mcpu,
                price,
            )
        created = {
            r["id"]
            for r in fake_vast.ledger()["instances"]
            if (r["label"] or "").startswith("corral:gpu:") and r["created"] > 0
        } - rented_before
        assert not created & set(busy)
        wait_for("released when idle", lambda: fake_vast.live("corral:gpu:") == [], restarted, 120)
    finally:
        restarted.stop()
