"""Head-of-line: a job that fits no instance its pool can bring up never blocks its user's other jobs, and
says why it waits; a job that can never fit anywhere (or names no pool) is refused at submission."""

from __future__ import annotations

from typing import Any

import httpx
from test_api_support import job
from test_worker_trust import (
    Service,
    _assignments,
    _completed,
    _job,
    _wait_batch,
    service_fixture,  # noqa: F401
)

from corral.store import instances as instance_store


async def _create(service: Service, bunch: list[dict[str, Any]], token: str) -> Any:
    return await service.user.post(
        "/api/v1/batches/create-fast",
        json={"batch": {"billing_project": "default", "token": token, "n_jobs": len(bunch)}, "bunch": bunch},
    )


def _sized(job_id: int, cpu: str, memory: str, **extra: Any) -> dict[str, Any]:
    return {**job(job_id), "resources": {"cpu": cpu, "memory": memory}, **extra}


async def test_a_job_too_big_for_its_pool_waits_with_a_reason_and_blocks_nobody(service: Service) -> None:
    # The pool's collection declares no shape, so the submission cannot know: the driver finds out.
    r = await _create(service, [_sized(1, "64", "1Gi"), _sized(2, "0.5", "256Mi"), _sized(3, "0.5", "256Mi")],
                      "head-of-line")
    assert r.status_code == 200, r.text
    batch_id = r.json()["id"]
    # The two small jobs after the big one (same user, same pool) run.
    small = await _assignments(service, 2)
    assert sorted(a["job_id"] for a in small) == [2, 3]
    big = await _job(service, batch_id, 1)
    assert big["state"] == "Ready"
    reason = "needs 64 cores and 1 GiB; pool default's largest instance has 4 cores and 8 GiB"
    assert big["waiting_reason"] == reason
    done = [_completed(a["key"]) for a in small]
    r = await service.worker.post("/api/v1/worker/events", json={"events": done})
    assert r.status_code == 200
    status = (await service.user.get(f"/api/v1/batches/{batch_id}")).json()
    assert status["waiting"] == 1 and status["n_completed"] >= 0
    assert (status["n_pending"], status["n_ready"]) == (0, 1)  # the big job: Ready, and waits with a reason
    # A bigger instance joins the pool: the job is placed there and loses its reason.
    await service.driver.register_instance(
        name="big", pool="default", token="big-token", cores_mcpu=64_000, memory_bytes=16 << 30, metadata={}
    )
    async with httpx.AsyncClient(transport=service.worker._transport, base_url=str(service.worker.base_url),
                                 headers={"Authorization": "Bearer big-token"}) as big_worker:
        shape = {"cores_mcpu": 64_000, "memory_bytes": 16 << 30}
        r = await big_worker.post("/api/v1/worker/activate", json=shape)
        assert r.status_code == 200, r.text
        r = await big_worker.post("/api/v1/worker/poll", json={"known": [], "wait": 10})
        (assignment,) = r.json()["assign"]
        assert assignment["job_id"] == 1
        running = await _job(service, batch_id, 1)
        assert running["state"] == "Running" and running["waiting_reason"] is None
        r = await big_worker.post("/api/v1/worker/events", json={"events": [_completed(assignment["key"])]})
        assert r.status_code == 200
    status = await _wait_batch(service, batch_id)
    assert status["state"] == "success"
    final = (await service.user.get(f"/api/v1/batches/{batch_id}")).json()
    assert final["complete"] and final["waiting"] == 0


async def test_a_job_naming_no_pool_or_never_fitting_is_refused_at_submission(service: Service) -> None:
    async with service.engine.begin() as conn:
        await instance_store.ensure_collection(
            conn, "hpc", kind="pool", provider="test", config={"shape": {"cores": 2, "memory": "1Gi"}}
        )
    r = await _create(service, [_sized(1, "0.5", "256Mi"), _sized(2, "1", "4Gi", pool="hpc")], "too-big")
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["field"] == "bunch[1].resources"
    assert "needs 1 core and 4 GiB; pool hpc's largest instance has 2 cores and 1 GiB" in body["message"]
    r = await _create(service, [_sized(1, "0.5", "256Mi", pool="nosuch")], "no-pool")
    assert r.status_code == 400, r.text
    assert r.json()["field"] == "bunch[0].pool" and "nosuch" in r.json()["message"]
    assert "hpc" in r.json()["message"]
    # Nothing was stored for the refused submissions.
    r = await service.user.get("/api/v1/batches")
    assert r.json()["batches"] == []
    # Fits the shape: accepted.
    r = await _create(service, [_sized(1, "2", "1Gi", pool="hpc")], "fits")
    assert r.status_code == 200, r.text
    # A job-private collection that can size any job takes what no pool can.
    async with service.engine.begin() as conn:
        await instance_store.ensure_collection(
            conn, "private", kind="job_private", provider="test", config={}
        )
    r = await _create(service, [_sized(1, "1", "4Gi", pool="hpc")], "private")
    assert r.status_code == 200, r.text
