"""Billing end to end: a real server and real workers; costs checked against rates x usage computed
here from the attempts the store recorded; live accrual; spend limits; a crash mid-batch; the CLI."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from decimal import Decimal
from typing import Any

import httpx
import pytest
from tests.acceptance.billing_check import (
    SiteRates,
    expected_cost,
    expected_usage,
    read_store,
    site_rates,
    store_url,
)
from tests.acceptance.harness import RunningServer, job

pytestmark = pytest.mark.slow
RATES = SiteRates(cpu="3.6", memory="0.36", storage="0.036")  # per core-hour, GiB-hour, GiB-hour


def _start(start_server: Any, rates: SiteRates = RATES, db_url: str | None = None, **billing: Any) -> Any:
    config = rates.config(accrual_interval=billing.pop("accrual_interval", 0.3), **billing)
    return start_server(db_url=db_url, billing=json.dumps(config))


def _wait_until(check: Any, what: str, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_costs_are_rates_times_usage_exactly_on_jobs_batches_projects_and_reports(start_server: Any) -> None:
    server = _start(start_server)
    batch_id = server.submit([
        job("sleep 0.3", 1, cpu="1", memory="512Mi", storage="1Gi"),
        job("sleep 0.2", 2, cpu="0.5", memory="100M"),
        job("exit 3", 3, [1]),
    ])
    status = server.wait(batch_id)
    stored = read_store(store_url(server.home, None), batch_id)
    usage = expected_usage(stored["attempts"])
    rates = site_rates(RATES)
    assert stored["by_batch"] == usage == stored["by_day"]
    total = expected_cost(usage, rates)
    assert status["cost"] == float(total)
    assert {line["resource"]: line["usage"] for line in status["cost_breakdown"]} == usage
    for job_id in (1, 2, 3):
        mine = [a for a in stored["attempts"] if a.job_id == job_id]
        detail = server.job(batch_id, job_id)
        assert detail["cost"] == float(expected_cost(expected_usage(mine), rates)), detail
    with server.client() as c:
        project = c.get("/api/v1/billing-projects/default").json()
        report = c.get("/api/v1/billing/report", params={"by": "day"}).json()
    assert project["accrued_cost"] == float(total)
    assert report["total"] == float(total) and len(report["rows"]) >= 1

    # The CLI's CSV report has one line per project and resource, with the same usage.
    out = _cli(server, server.token, "billing", "report", "--by", "project", "--csv")
    lines = list(csv.DictReader(io.StringIO(out)))
    assert {(row["project"], row["resource"]): int(row["usage"]) for row in lines} == {
        ("default", name): amount for name, amount in usage.items()
    }


def _cli(server: RunningServer, token: str, *args: str, ok: bool = True) -> str:
    env = {**os.environ, "CORRAL_URL": server.url, "CORRAL_TOKEN": token, "CORRAL_HOME": str(server.home)}
    done = subprocess.run([sys.executable, "-m", "corral", *args], env=env, capture_output=True, text=True,
                          timeout=60)
    assert (done.returncode == 0) == ok, f"{args}: {done.stdout}\n{done.stderr}"
    assert "Traceback" not in done.stderr
    return done.stdout if ok else done.stderr


def test_a_long_jobs_cost_grows_while_it_runs(start_server: Any) -> None:
    server = _start(start_server)
    batch_id = server.submit([job("sleep 60", 1, cpu="1")])
    seen: list[float] = []

    def grew() -> bool:
        cost = server.job(batch_id, 1)["cost"]
        if not seen or cost > seen[-1]:
            seen.append(cost)
        return len(seen) >= 4  # three increases seen while it still runs

    _wait_until(grew, "the running job's cost to grow three times")
    assert server.job(batch_id, 1)["state"] == "Running"
    assert server.batch(batch_id)["cost"] > 0
    with server.client() as c:
        assert c.patch(f"/api/v1/batches/{batch_id}/cancel").status_code == 200
    server.wait(batch_id)
    stored = read_store(store_url(server.home, None), batch_id)
    assert server.job(batch_id, 1)["cost"] == float(expected_cost(expected_usage(stored["attempts"]),
                                                                  site_rates(RATES)))


@pytest.mark.parametrize("db_kind", ["sqlite", "postgres"], indirect=True)
def test_spend_limit_cancels_running_batches_and_refuses_new_work(start_server: Any, db_url: str) -> None:
    rates = SiteRates(cpu="36")  # 0.01 per core-second
    interval = 0.5
    server = _start(start_server, rates, db_url=db_url, accrual_interval=interval)
    limit = 0.05
    admin = {"Authorization": f"Bearer {server.admin_token}"}
    with httpx.Client(base_url=server.url, headers=admin, timeout=30) as c:
        assert c.post("/api/v1/billing-projects", json={"name": "capped", "spend_limit": limit}).is_success
        me = c.get("/api/v1/me", headers={"Authorization": f"Bearer {server.token}"}).json()["name"]
        assert c.post(f"/api/v1/billing-projects/capped/users/{me}").is_success
    # 4 x 0.5 core = 2 cores: 0.02 per second, the limit is reached after ~2.5 s of running
    jobs = [job("sleep 120", i, cpu="0.5") for i in range(1, 5)]
    jobs.append(job("echo cleanup", 5, [1], always_run=True))
    batch_id = server.submit(jobs, billing_project="capped")
    status = server.wait(batch_id, timeout=120)
    assert status["state"] == "cancelled", status
    found = server.jobs(batch_id)
    assert [found[i]["state"] for i in range(1, 5)] == ["Cancelled"] * 4
    assert found[5]["state"] == "Success"  # always_run jobs still run

    with server.client() as c:
        spec = {"billing_project": "capped", "token": uuid.uuid4().hex, "n_jobs": 1}
        r = c.post("/api/v1/batches/create-fast", json={"batch": spec, "bunch": [job("true", 1)]})
        project = c.get("/api/v1/billing-projects/capped").json()
    assert r.status_code == 403, r.text
    message = r.json()["message"]
    assert "'capped'" in message and "0.05 USD limit" in message and "spent" in message
    spend = Decimal(repr(project["accrued_cost"]))
    # The stated bound: one accrual interval plus one writer tick (1 s) at the project's burn rate,
    # plus what the always_run job cost after the cancel.
    burn_per_second = Decimal("0.02")
    always_run = Decimal(repr(found[5]["cost"]))
    assert Decimal(repr(limit)) <= spend <= Decimal(repr(limit)) + burn_per_second * Decimal(
        repr(interval + 1.0)) + always_run, (spend, always_run)
    stored = read_store(store_url(server.home, db_url), batch_id)
    assert float(expected_cost(expected_usage(stored["attempts"]), site_rates(rates))) == float(spend)


@pytest.mark.parametrize("db_kind", ["sqlite", "postgres"], indirect=True)
def test_server_killed_mid_batch_leaves_totals_exact(start_server: Any, db_url: str) -> None:
    server = _start(start_server, db_url=db_url, accrual_interval=0.2)
    n = 30
    batch_id = server.submit([job(f"sleep 0.{i % 7}", i, cpu="0.5") for i in range(1, n + 1)])
    _wait_until(lambda: server.batch(batch_id)["n_completed"] >= 8, "8 jobs to complete")
    server.kill(signal.SIGKILL)
    time.sleep(1.0)  # workers keep running their jobs and keep retrying their reports
    server.start()
    status = server.wait(batch_id, timeout=120)
    assert status["state"] == "success", status
    stored = read_store(store_url(server.home, db_url), batch_id)
    usage = expected_usage(stored["attempts"])
    # Neither lost nor counted twice: the roll-ups hold exactly what the attempts used.
    assert stored["by_batch"] == usage == stored["by_day"]
    total = float(expected_cost(usage, site_rates(RATES)))
    assert status["cost"] == total
    with server.client() as c:
        assert c.get("/api/v1/billing-projects/default").json()["accrued_cost"] == total


def test_billing_project_lifecycle_through_the_cli(start_server: Any) -> None:
    server = _start(start_server)
    admin = server.admin_token
    _cli(server, admin, "billing-project", "create", "lab", "--limit", "5")
    me = json.loads(_cli(server, server.token, "user", "me", "--json"))["name"]
    _cli(server, admin, "billing-project", "add-user", "lab", me)
    shown = json.loads(_cli(server, server.token, "billing-project", "show", "lab", "--json"))
    assert (shown["status"], shown["limit"], shown["users"]) == ("open", 5.0, [me])
    _cli(server, admin, "billing-project", "limit", "lab", "2.5")
    assert json.loads(_cli(server, admin, "billing-project", "show", "lab", "--json"))["limit"] == 2.5
    _cli(server, admin, "billing-project", "limit", "lab", "--remove")
    err = _cli(server, admin, "billing-project", "delete", "lab", ok=False)
    assert "close it before deleting" in err
    closed = json.loads(_cli(server, admin, "billing-project", "close", "lab", "--json"))
    assert closed["status"] == "closed" and closed["limit"] is None
    err = _cli(server, server.token, "run", "--help", ok=True)  # the CLI stays usable
    with server.client() as c:
        spec = {"billing_project": "lab", "token": uuid.uuid4().hex, "n_jobs": 1}
        r = c.post("/api/v1/batches/create-fast", json={"batch": spec, "bunch": [job("true", 1)]})
        assert r.status_code == 403 and "closed" in r.json()["message"]
    _cli(server, admin, "billing-project", "reopen", "lab")
    batch_id = server.submit([job("true", 1)], billing_project="lab")
    server.wait(batch_id)
    _cli(server, admin, "billing-project", "close", "lab")
    deleted = json.loads(_cli(server, admin, "billing-project", "delete", "lab", "--json"))
    assert deleted["status"] == "deleted"
    listed = json.loads(_cli(server, admin, "billing-project", "list", "--json"))
    assert [p["billing_project"] for p in listed] == ["default"]
    err = _cli(server, admin, "billing-project", "limit", "lab", ok=False)
    assert "AMOUNT or --remove" in err


def test_rate_change_mid_batch_charges_each_attempt_its_own_rate(start_server: Any) -> None:
    """The server restarts with a new cpu rate while job 1 runs; job 2 starts after the change."""
    old, new = SiteRates(cpu="3.6", memory="0.36"), SiteRates(cpu="7.2", memory="0.36")
    server = _start(start_server, old)
    batch_id = server.submit([job("sleep 6", 1, cpu="1"), job("sleep 0.3", 2, [1], cpu="0.5")])
    # Running (assigned) is not yet started: wait until its charge is open and accruing at the old rate
    _wait_until(lambda: (server.job(batch_id, 1).get("cost") or 0) > 0, "job 1 to run and accrue")
    server.kill(signal.SIGKILL)  # workers keep running job 1
    server.env["CORRAL_BILLING"] = json.dumps(new.config(accrual_interval=0.3))
    server.start()
    status = server.wait(batch_id)
    assert status["state"] == "success", status
    stored = read_store(store_url(server.home, None), batch_id)
    one = [a for a in stored["attempts"] if a.job_id == 1]
    two = [a for a in stored["attempts"] if a.job_id == 2]
    rates = {"cpu/site/1": old.cpu, "cpu/site/2": new.cpu, "memory/site/1": old.memory}
    usage_one, usage_two = expected_usage(one), expected_usage(two)
    usage_two = {("cpu/site/2" if k == "cpu/site/1" else k): v for k, v in usage_two.items()}
    assert server.job(batch_id, 1)["cost"] == float(expected_cost(usage_one, rates))  # the rate it started at
    assert server.job(batch_id, 2)["cost"] == float(expected_cost(usage_two, rates))
    lines = {line["resource"] for line in status["cost_breakdown"]}
    assert lines == {"cpu/site/1", "cpu/site/2", "memory/site/1"}
    with server.client() as c:
        versions = {r["resource"]: r["rate"] for r in c.get("/api/v1/billing/rates").json()["rates"]}
    assert versions == {"cpu/site/1": 3.6, "cpu/site/2": 7.2, "memory/site/1": 0.36}
