"""Workers are not trusted with the truth: malformed events are a 400 for that worker only, times are
clamped to the driver's window, capacity to the instance's shape, and a tick that cannot apply one item
isolates it while scheduling carries on for everyone else. A real Driver and store behind the real app."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from test_api_support import job

import corral.driver.step as driver_module
from corral.api.app import create_app
from corral.api.bootstrap import bootstrap
from corral.config import Settings
from corral.driver.driver import Driver
from corral.driver.worker_api import worker_router
from corral.store import instances as instance_store
from corral.store.tables import attempts, instances, jobs

TOKEN = "worker-token-trust"
YEAR = 365 * 24 * 3600


@dataclass
class Service:
    user: httpx.AsyncClient
    worker: httpx.AsyncClient
    driver: Driver
    engine: AsyncEngine
    admin: dict[str, str]


@pytest.fixture(name="service")
async def service_fixture(engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[Service]:
    settings = Settings(home=tmp_path / "home", admin_user="admin", default_user="alice", pool="default")
    tokens = await bootstrap(engine, settings)
    driver = Driver(engine, settings)
    await driver.start()
    async with engine.begin() as conn:
        await instance_store.ensure_collection(conn, "default", kind="pool", provider="test", config={})
    await driver.register_instance(
        name="w1", pool="default", token=TOKEN, cores_mcpu=4000, memory_bytes=8 << 30, metadata={}
    )
    app = create_app(settings, engine, driver, extra_routers=[worker_router(driver, settings.log_dir)])
    transport = httpx.ASGITransport(app=app)
    base = "http://corral.test"
    async with (
        httpx.AsyncClient(transport=transport, base_url=base, timeout=30,
                          headers={"Authorization": f"Bearer {tokens['token']}"}) as user,
        httpx.AsyncClient(transport=transport, base_url=base, timeout=30,
                          headers={"Authorization": f"Bearer {TOKEN}"}) as worker,
    ):
        r = await worker.post("/api/v1/worker/activate", json={"cores_mcpu": 4000, "memory_bytes": 8 << 30})
        assert r.status_code == 200, r.text
        try:
            yield Service(user, worker, driver, engine, {"Authorization": f"Bearer {tokens['admin_token']}"})
        finally:
            driver.close_polls()
            await driver.stop()


async def _submit(service: Service, n: int, token: str) -> int:
    r = await service.user.post(
        "/api/v1/batches/create-fast",
        json={"batch": {"billing_project": "default", "token": token, "n_jobs": n},
              "bunch": [job(i + 1) for i in range(n)]},
    )
    assert r.status_code == 200, r.text
    return int(r.json()["id"])


async def _assignments(service: Service, n: int, known: list[str] | None = None) -> list[dict[str, Any]]:
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + 30
    while len(got) < n and time.monotonic() < deadline:
        r = await service.worker.post(
            "/api/v1/worker/poll", json={"known": (known or []) + [a["key"] for a in got], "wait": 5}
        )
        assert r.status_code == 200, r.text
        got += r.json()["assign"]
    assert len(got) == n, got
    return got


def _completed(key: str, *, time_: Any = None, exit_code: int = 0, **extra: Any) -> dict[str, Any]:
    return {
        "type": "completed", "key": key, "time": time.time() if time_ is None else time_,
        "state": "succeeded" if exit_code == 0 else "failed", "exit_code": exit_code, "error": None,
        "out_of_memory": False, "timed_out": False,
        "container_statuses": {"input": None, "main": None, "output": None},
        "resource_usage": {}, **extra,
    }


async def _job(service: Service, batch_id: int, job_id: int) -> dict[str, Any]:
    r = await service.user.get(f"/api/v1/batches/{batch_id}/jobs/{job_id}")
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _wait_batch(service: Service, batch_id: int) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        body = (await service.user.get(f"/api/v1/batches/{batch_id}")).json()
        if body.get("complete"):
            return dict(body)
        await asyncio.sleep(0.05)
    raise AssertionError(f"batch {batch_id} did not complete: {body}")


POISON = [
    pytest.param(_completed("{key}", time_="inf"), "time", id="time-inf"),
    pytest.param(_completed("{key}", time_="NaN"), "time", id="time-nan"),
    pytest.param(_completed("{key}", time_="soon"), "time", id="time-soon"),
    pytest.param(_completed("{key}", exit_code=2**40), "exit_code", id="exit-code-overflow"),
    pytest.param({**_completed("{key}"), "state": "exploded"}, "state", id="unknown-state"),
    pytest.param({**_completed("{key}"), "key": "1.x.1"}, "key", id="key-not-b.j.a"),
    pytest.param({**_completed("{key}"), "key": f"1.1.{2**70}"}, "key", id="key-id-overflow"),
    pytest.param({"type": "finished", "key": "{key}", "time": 1.0}, "type", id="unknown-type"),
    pytest.param({"type": "started", "time": 1.0}, "key", id="no-key"),
]


@pytest.mark.parametrize(("event", "field"), POISON)
async def test_a_malformed_event_is_a_400_for_that_worker_and_scheduling_carries_on(
    service: Service, event: dict[str, Any], field: str
) -> None:
    batch_id = await _submit(service, 1, "poisoned")
    (a,) = await _assignments(service, 1)
    bad = {k: (v.format(key=a["key"]) if isinstance(v, str) else v) for k, v in event.items()}
    for _ in range(3):  # the worker retries: every time a 400, never a tick failure
        r = await service.worker.post("/api/v1/worker/events", json={"events": [bad]})
        assert r.status_code == 400, r.text
        assert field in r.json()["field"] or field in r.json()["message"]
    assert (await _job(service, batch_id, 1))["state"] == "Running"
    # The driver still schedules and completes others' work, and this attempt's good report.
    ticks = service.driver.ticks
    other = await _submit(service, 2, "others")
    fresh = await _assignments(service, 2, known=[a["key"]])
    events = [_completed(x["key"]) for x in [a, *fresh]]
    r = await service.worker.post("/api/v1/worker/events", json={"events": events})
    assert r.status_code == 200, r.text
    assert sorted(r.json()["ack"]) == sorted(e["key"] for e in events)
    assert (await _wait_batch(service, other))["state"] == "success"
    assert (await _wait_batch(service, batch_id))["state"] == "success"
    assert service.driver.ticks > ticks


async def test_a_completion_dated_ten_years_ahead_is_clamped_to_the_drivers_clock(service: Service) -> None:
    batch_id = await _submit(service, 1, "future")
    (a,) = await _assignments(service, 1)
    before = time.time()
    events = [{"type": "started", "key": a["key"], "time": before - 10 * YEAR},
              _completed(a["key"], time_=before + 10 * YEAR)]
    r = await service.worker.post("/api/v1/worker/events", json={"events": events})
    assert r.status_code == 200, r.text
    await _wait_batch(service, batch_id)
    after = time.time()
    async with service.engine.connect() as conn:
        att = (await conn.execute(select(attempts).where(attempts.c.batch_id == batch_id))).one()
        row = (await conn.execute(select(jobs).where(jobs.c.batch_id == batch_id))).one()
    assert att.time_assigned <= att.time_started <= att.time_ended <= after
    assert row.time_completed is None or row.time_completed <= after
    # 0.5 cores for at most the test's own duration, not 87,600 core-hours.
    assert row.msec_mcpu <= (after - att.time_assigned + 1) * 1000 * 500
    assert row.cost < 0.01


async def test_a_reactivation_claiming_1000_cores_and_a_pebibyte_is_capped_at_the_shape(
    service: Service,
) -> None:
    r = await service.worker.post(
        "/api/v1/worker/activate", json={"cores_mcpu": 1_000_000, "memory_bytes": 1 << 50}
    )
    assert r.status_code == 200, r.text
    assert (r.json()["cores_mcpu"], r.json()["memory_bytes"]) == (4000, 8 << 30)
    inst = service.driver.instances["w1"]
    assert (inst.cores_mcpu, inst.memory_bytes) == (4000, 8 << 30)
    async with service.engine.connect() as conn:
        row = (await conn.execute(select(instances).where(instances.c.name == "w1"))).one()
    assert (row.cores_mcpu, row.memory_bytes) == (4000, 8 << 30)
    # After a driver restart the shape still bounds the claim.
    await service.driver._rebuild()
    r = await service.worker.post(
        "/api/v1/worker/activate", json={"cores_mcpu": 1_000_000, "memory_bytes": 1 << 50}
    )
    assert (r.json()["cores_mcpu"], r.json()["memory_bytes"]) == (4000, 8 << 30)
    # A smaller machine than declared is believed.
    smaller = {"cores_mcpu": 2000, "memory_bytes": 1 << 30}
    r = await service.worker.post("/api/v1/worker/activate", json=smaller)
    assert (r.json()["cores_mcpu"], r.json()["memory_bytes"]) == (2000, 1 << 30)
    for bad in ({"cores_mcpu": 2**40, "memory_bytes": 1}, {"cores_mcpu": 1, "memory_bytes": 1e30},
                {"cores_mcpu": 0, "memory_bytes": 1}):
        r = await service.worker.post("/api/v1/worker/activate", json=bad)
        assert r.status_code == 400, r.text


async def test_an_event_the_tick_cannot_apply_errors_its_job_and_the_rest_carry_on(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Fault injection: applying one completion raises inside the tick (as a store or code fault would)."""
    real = driver_module.completed_outcome

    def faulty(attempt: Any, event: Any, now: float) -> Any:
        if event.exit_code == 99:
            raise ValueError("cannot apply this report")
        return real(attempt, event, now)

    monkeypatch.setattr(driver_module, "completed_outcome", faulty)
    batch_id = await _submit(service, 3, "isolated")
    assigned = await _assignments(service, 3)
    by_job = {a["job_id"]: a for a in assigned}
    events = [_completed(by_job[1]["key"], exit_code=99), _completed(by_job[2]["key"]),
              _completed(by_job[3]["key"], exit_code=1)]
    r = await service.worker.post("/api/v1/worker/events", json={"events": events})
    assert r.status_code == 200, r.text
    assert sorted(r.json()["ack"]) == sorted(e["key"] for e in events)
    await _wait_batch(service, batch_id)
    poisoned = await _job(service, batch_id, 1)
    assert poisoned["state"] == "Error"
    assert "could not apply" in str(poisoned["status"])
    assert (await _job(service, batch_id, 2))["state"] == "Success"
    assert (await _job(service, batch_id, 3))["state"] == "Failed"
    # And the driver schedules new work afterwards.
    other = await _submit(service, 1, "after")
    (b,) = await _assignments(service, 1)
    r = await service.worker.post("/api/v1/worker/events", json={"events": [_completed(b["key"])]})
    assert r.status_code == 200
    assert (await _wait_batch(service, other))["state"] == "success"


async def test_text_a_job_printed_that_no_store_keeps_is_cleaned_not_refused(service: Service) -> None:
    batch_id = await _submit(service, 1, "nul")
    (a,) = await _assignments(service, 1)
    body = json.dumps({"events": [_completed(a["key"], exit_code=1, error="bad\x00byte \ud800 here")]})
    r = await service.worker.post("/api/v1/worker/events", content=body.encode(),
                                  headers={"Content-Type": "application/json"})
    assert r.status_code == 200, r.text
    await _wait_batch(service, batch_id)
    job = await _job(service, batch_id, 1)
    assert job["state"] == "Failed" and job["status"]["error"] == "bad\ufffdbyte \ufffd here"
