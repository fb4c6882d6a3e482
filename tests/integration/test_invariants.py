"""The system checks its own invariants (`corral admin check`), and the check can fail: each kind of
corruption is seen, through the admin route, against a real driver and store."""

from __future__ import annotations

from typing import Any

from sqlalchemy import update
from test_worker_trust import (
    Service,
    _assignments,
    _completed,
    _submit,
    _wait_batch,
    service_fixture,  # noqa: F401
)

from corral.store.tables import batches, instances


async def _check(service: Service) -> dict[str, Any]:
    r = await service.user.get("/api/v1/admin/check", headers=service.admin)
    assert r.status_code == 200, r.text
    return dict(r.json())


async def _complete(service: Service, assigned: list[dict[str, Any]]) -> Any:
    events = [_completed(a["key"]) for a in assigned]
    return await service.worker.post("/api/v1/worker/events", json={"events": events})


async def test_a_healthy_system_passes_and_only_admins_may_ask(service: Service) -> None:
    batch_id = await _submit(service, 3, "healthy")
    assigned = await _assignments(service, 3)
    running = await _check(service)
    assert running == {"ok": True, "checked": ["store", "driver"], "violations": []}
    r = await _complete(service, assigned)
    assert r.status_code == 200
    await _wait_batch(service, batch_id)
    assert (await _check(service))["ok"]
    r = await service.user.get("/api/v1/admin/check")  # alice is no admin
    assert r.status_code == 403


async def test_a_corrupted_batch_counter_is_caught(service: Service) -> None:
    batch_id = await _submit(service, 2, "counter")
    assigned = await _assignments(service, 2)
    await _complete(service, assigned)
    await _wait_batch(service, batch_id)
    async with service.engine.begin() as conn:
        one_more = batches.c.n_succeeded + 1
        await conn.execute(update(batches).where(batches.c.id == batch_id).values(n_succeeded=one_more))
    report = await _check(service)
    assert not report["ok"]
    detail = f"batch {batch_id}: n_succeeded is 3 but its jobs say 2"
    assert {"check": "batch counters", "detail": detail} in report["violations"]


async def test_drifted_driver_memory_and_an_attempt_on_a_gone_instance_are_caught(service: Service) -> None:
    await _submit(service, 1, "drift")
    (a,) = await _assignments(service, 1)
    service.driver.running_mcpu["default"]["alice"] += 250  # cores counted that no assignment holds
    async with service.engine.begin() as conn:
        await conn.execute(update(instances).where(instances.c.name == "w1").values(state="deleted"))
    checks = {v["check"] for v in (await _check(service))["violations"]}
    assert {"driver cores", "instances"} <= checks, checks
    details = " ".join(v["detail"] for v in (await _check(service))["violations"])
    assert f"attempt {a['key']} is running on instance w1, which is deleted" in details


async def test_an_attempt_being_cancelled_is_no_violation(service: Service) -> None:
    batch_id = await _submit(service, 1, "cancelled")
    (a,) = await _assignments(service, 1)  # delivered: the worker must be told to stop it
    r = await service.user.patch(f"/api/v1/batches/{batch_id}/cancel")
    assert r.status_code == 200, r.text
    await _wait_batch(service, batch_id)
    assert (await _check(service))["violations"] == []
    r = await service.worker.post("/api/v1/worker/poll", json={"known": [a["key"]], "wait": 5})
    assert r.json()["cancel"] == [a["key"]]
    await _complete(service, [a])
    assert (await _check(service))["violations"] == []
