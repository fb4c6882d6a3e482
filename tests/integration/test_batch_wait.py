"""GET /api/v1/batches/{id}?wait=S against a real Driver and store, in-process (the test plays the
worker): the answer comes when the tick that completes the batch commits, or when S is up."""

from __future__ import annotations

import asyncio
import time

import pytest
from test_worker_routes import Service, _assigned, _completed
from test_worker_routes import service as worker_routes_service

from corral.api.routes import batches as batch_routes

service = worker_routes_service  # the fixture (a real Driver, store and API in-process), under its name


@pytest.fixture
def no_recheck(monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the driver's completion can end a wait early (no periodic re-read of the batch)."""
    monkeypatch.setattr(batch_routes, "RECHECK_SECONDS", 3600.0)


async def _waiters(service: Service, n: int) -> None:
    for _ in range(500):
        if len(service.driver.completions) == n:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"{len(service.driver.completions)} waiting requests, expected {n}")


async def _left_waiting(service: Service) -> int:
    """Waits still registered once the loop has run the done callbacks of those that ended."""
    await asyncio.sleep(0)
    return len(service.driver.completions)


async def test_a_wait_answers_when_the_tick_completes_the_batch(service: Service, no_recheck: None) -> None:
    a = await _assigned(service)
    sent = time.monotonic()
    waiting = asyncio.create_task(service.user.get(f"/api/v1/batches/{a['batch_id']}", params={"wait": 30}))
    await _waiters(service, 1)
    assert not waiting.done()
    r = await service.worker.post("/api/v1/worker/events", json={"events": [_completed(a["key"], {})]})
    assert r.status_code == 200, r.text
    r = await asyncio.wait_for(waiting, 25)  # only the completion answers it before its 30 s are up
    assert r.status_code == 200, r.text
    status = r.json()
    assert status["complete"] and status["state"] == "success" and status["n_succeeded"] == 1, status
    assert time.monotonic() - sent < 25
    assert await _left_waiting(service) == 0  # nothing left waiting


async def test_cancelling_the_batch_also_ends_a_wait(service: Service, no_recheck: None) -> None:
    a = await _assigned(service)
    waiting = asyncio.create_task(service.user.get(f"/api/v1/batches/{a['batch_id']}", params={"wait": 30}))
    await _waiters(service, 1)
    r = await service.user.patch(f"/api/v1/batches/{a['batch_id']}/cancel")
    assert r.status_code < 300, r.text
    # The running attempt is killed on the worker; its end completes the batch.
    r = await service.worker.post("/api/v1/worker/events", json={"events": [
        {**_completed(a["key"], {}), "state": "cancelled", "exit_code": None}
    ]})
    assert r.status_code == 200, r.text
    r = await asyncio.wait_for(waiting, 25)
    status = r.json()
    assert status["complete"] and status["state"] == "cancelled", status
    assert await _left_waiting(service) == 0


async def test_a_wait_on_a_running_batch_answers_when_its_time_is_up(service: Service) -> None:
    a = await _assigned(service)
    sent = time.monotonic()
    r = await service.user.get(f"/api/v1/batches/{a['batch_id']}", params={"wait": 0.5})
    assert r.status_code == 200, r.text
    assert not r.json()["complete"] and r.json()["n_running"] == 1
    assert time.monotonic() - sent >= 0.45  # it did wait
    assert await _left_waiting(service) == 0


async def test_a_complete_batch_is_answered_at_once(service: Service, no_recheck: None) -> None:
    a = await _assigned(service)
    r = await service.worker.post("/api/v1/worker/events", json={"events": [_completed(a["key"], {})]})
    assert r.status_code == 200, r.text
    for _ in range(200):  # the events reply comes once the completion is durable
        if (await service.user.get(f"/api/v1/batches/{a['batch_id']}")).json()["complete"]:
            break
        await asyncio.sleep(0.01)
    r = await asyncio.wait_for(service.user.get(f"/api/v1/batches/{a['batch_id']}", params={"wait": 60}), 25)
    assert r.json()["complete"]
    assert await _left_waiting(service) == 0


async def test_wait_is_checked_and_a_bad_one_names_the_field(service: Service) -> None:
    a = await _assigned(service)
    for bad in ("-1", "61", "soon", "nan"):
        r = await service.user.get(f"/api/v1/batches/{a['batch_id']}", params={"wait": bad})
        assert 400 <= r.status_code < 500 and "wait" in r.text, (bad, r.status_code, r.text)
    r = await service.user.get("/api/v1/batches/999999", params={"wait": 5})
    assert r.status_code == 404
    assert await _left_waiting(service) == 0  # the refused and the unknown left nothing waiting
    r = await service.user.get(f"/api/v1/batches/{a['batch_id']}")
    assert r.status_code == 200 and r.json()["n_running"] == 1  # the batch is as it was
