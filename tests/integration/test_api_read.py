"""Reading: batch list with paging and filters, jobs, attempts, logs; cancel and delete."""

from __future__ import annotations

import time

from sqlalchemy import update
from test_api_support import Api, api_fixture, job  # noqa: F401

from corral.store.logs import log_path
from corral.store.tables import attempts, batch_usage, batches, billing_rates, daily_usage, jobs
from transition_guard import walk_to


async def test_batches_are_listed_newest_first_in_pages(api: Api) -> None:
    ids = [await api.submit([job(1)], token=f"b{i}", attributes={"i": str(i)}) for i in range(5)]
    seen: list[int] = []
    last = None
    while True:
        params = {"limit": 2} | ({"last_batch_id": last} if last else {})
        page = (await api.client.get("/api/v1/batches", params=params)).json()
        seen += [b["id"] for b in page["batches"]]
        last = page["last_batch_id"]
        if last is None:
            break
    assert seen == ids[::-1]


async def test_batch_query_terms(api: Api) -> None:
    a = await api.submit([job(1)], token="a", attributes={"kind": "sweep", "owner": "x"})
    b = await api.submit([job(1)], token="b", attributes={"kind": "bench"})
    r = await api.client.post("/api/v1/batches/create", json={"token": "c", "n_jobs": 1, "attributes": {}})
    c = r.json()["id"]
    await api.client.patch(f"/api/v1/batches/{b}/cancel")

    async def ids(q: str) -> list[int]:
        r = await api.client.get("/api/v1/batches", params={"q": q})
        assert r.status_code == 200, r.text
        return [x["id"] for x in r.json()["batches"]]

    assert await ids("kind=sweep") == [a]
    assert await ids("has:kind") == [b, a]
    assert await ids("!has:kind") == [c]
    assert await ids("open") == [c]
    assert await ids("cancelled") == [b]
    assert await ids("running !cancelled") == [a]
    assert await ids("user:alice kind=bench") == [b]
    assert await ids("billing_project:other") == []
    r = await api.client.get("/api/v1/batches", params={"q": "frobnicate"})
    assert r.status_code == 400 and r.json()["field"] == "q"


async def test_jobs_are_listed_in_pages_and_filtered_by_state(api: Api) -> None:
    batch_id = await api.submit([job(j, attributes={"even": str(j % 2 == 0)}) for j in range(1, 8)])
    async with api.engine.begin() as conn:
        await walk_to(conn, batch_id, [2, 3], "Success")
        await walk_to(conn, batch_id, [4], "Running")
    url = f"/api/v1/batches/{batch_id}/jobs"
    first = (await api.client.get(url, params={"limit": 3})).json()
    assert [j["job_id"] for j in first["jobs"]] == [1, 2, 3] and first["last_job_id"] == 3
    rest = (await api.client.get(url, params={"limit": 10, "last_job_id": 3})).json()
    assert [j["job_id"] for j in rest["jobs"]] == [4, 5, 6, 7] and rest["last_job_id"] is None
    done = (await api.client.get(url, params={"state": "done"})).json()["jobs"]
    assert [j["job_id"] for j in done] == [2, 3]
    running = (await api.client.get(url, params={"state": "running"})).json()["jobs"]
    assert [j["job_id"] for j in running] == [4]
    ready = (await api.client.get(url, params={"state": "Ready,pending"})).json()["jobs"]
    assert [j["job_id"] for j in ready] == [1, 5, 6, 7]
    even = (await api.client.get(url, params={"q": "even=True !success"})).json()["jobs"]
    assert [j["job_id"] for j in even] == [4, 6]
    r = await api.client.get(url, params={"state": "sleeping"})
    assert r.status_code == 400 and r.json()["field"] == "state"
    assert first["jobs"][0] | {"duration": None} == {
        "batch_id": batch_id,
        "job_id": 1,
        "job_group_id": 0,
        "name": None,
        "user": "alice",
        "billing_project": "default",
        "state": "Ready",
        "exit_code": None,
        "duration": None,
        "cost": 0.0,
        "msec_mcpu": 0,
        "always_run": False,
        "serving": False,
        "waiting_reason": None,
        "reason": None,
        "pool": "default",
    }


async def test_job_status_attempts_and_logs(api: Api) -> None:
    batch_id = await api.submit([job(1, name="hello", command="echo hi")])
    now = time.time()
    status = {
        "container_statuses": {
            "main": {
                "name": "main",
                "state": "succeeded",
                "exit_code": 0,
                "timing": {"start": now - 2, "end": now - 1, "duration_ms": 1000},
            }
        },
        "out_of_memory": False,
    }
    async with api.engine.begin() as conn:  # what the driver records: a lost attempt, then a success
        await conn.execute(
            attempts.insert(),
            [
                {
                    "batch_id": batch_id,
                    "job_id": 1,
                    "attempt_id": 1,
                    "instance_name": "i-1",
                    "cores_mcpu": 500,
                    "memory_bytes": 1,
                    "state": "ended",
                    "end_reason": "lost",
                    "time_assigned": now - 5,
                    "time_started": now - 4.5,
                    "time_ended": now - 4,
                },
                {
                    "batch_id": batch_id,
                    "job_id": 1,
                    "attempt_id": 2,
                    "instance_name": "i-2",
                    "cores_mcpu": 500,
                    "memory_bytes": 1,
                    "state": "ended",
                    "end_reason": "success",
                    "exit_code": 0,
                    "time_assigned": now - 3,
                    "time_started": None,
                    "time_ended": now - 1,
                },
            ],
        )
        await walk_to(conn, batch_id, [1], "Success")
        await conn.execute(update(jobs).where(jobs.c.batch_id == batch_id).values(exit_code=0, status=status))
    detail = (await api.client.get(f"/api/v1/batches/{batch_id}/jobs/1")).json()
    assert (detail["name"], detail["state"], detail["exit_code"], detail["duration"]) == (
        "hello",
        "Success",
        0,
        1000,
    )
    assert detail["status"]["container_statuses"]["main"]["exit_code"] == 0
    assert detail["spec"]["command"] == ["/bin/bash", "-c", "echo hi"]
    assert detail["attributes"] == {"name": "hello"}
    tries = (await api.client.get(f"/api/v1/batches/{batch_id}/jobs/1/attempts")).json()
    assert [(a["attempt_id"], a["instance_name"], a["reason"]) for a in tries] == [
        ("1", "i-1", "lost"),
        ("2", "i-2", "success"),
    ]
    assert tries[1]["start_time"].endswith("Z") and tries[1]["end_time"]
    assert (await api.client.get(f"/api/v1/batches/{batch_id}/jobs/1/log")).json() == {}
    for attempt_id, text in ((1, "first try\n"), (2, "hi\n")):
        path = log_path(api.settings.log_dir, batch_id, 1, attempt_id, "main")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    log_path(api.settings.log_dir, batch_id, 1, 2, "input").write_text("fetched\n")
    assert (await api.client.get(f"/api/v1/batches/{batch_id}/jobs/1/log")).json() == {
        "input": "fetched\n",
        "main": "hi\n",
    }
    r = await api.client.get(f"/api/v1/batches/{batch_id}/jobs/1/log/main")
    assert r.status_code == 200 and r.text == "hi\n" and r.headers["content-type"].startswith("text/plain")
    r = await api.client.get(f"/api/v1/batches/{batch_id}/jobs/1/log/output")
    assert r.status_code == 404 and r.json()["field"] == "step"
    r = await api.client.get(f"/api/v1/batches/{batch_id}/jobs/1/log/stdout")
    assert r.status_code == 400 and r.json()["field"] == "step"
    r = await api.client.get(f"/api/v1/batches/{batch_id}/jobs/9")
    assert r.status_code == 404 and r.json()["field"] == "job_id"


async def test_cancel_sets_the_flag_and_tells_the_driver(api: Api) -> None:
    batch_id = await api.submit([job(1), job(2, [1])])
    r = await api.client.patch(f"/api/v1/batches/{batch_id}/cancel")
    assert r.status_code == 200
    assert api.hooks.cancelled == [batch_id]
    status = (await api.client.get(f"/api/v1/batches/{batch_id}")).json()
    assert status["state"] == "cancelled"
    async with api.engine.connect() as conn:
        assert (await conn.execute(batches.select().where(batches.c.id == batch_id))).one().cancelled
    assert (await api.client.get("/api/v1/batches", params={"q": "cancelled"})).json()["batches"][0][
        "id"
    ] == batch_id


async def test_delete_cancels_then_hides_the_batch(api: Api) -> None:
    batch_id = await api.submit([job(1)])
    r = await api.client.delete(f"/api/v1/batches/{batch_id}")
    assert r.status_code == 200
    assert api.hooks.cancelled == [batch_id]
    for path in (
        f"/api/v1/batches/{batch_id}",
        f"/api/v1/batches/{batch_id}/jobs",
        f"/api/v1/batches/{batch_id}/jobs/1",
    ):
        assert (await api.client.get(path)).status_code == 404, path
    assert (await api.client.patch(f"/api/v1/batches/{batch_id}/cancel")).status_code == 404
    assert (await api.client.delete(f"/api/v1/batches/{batch_id}")).status_code == 404
    assert (await api.client.get("/api/v1/batches")).json()["batches"] == []


async def test_accrued_cost_and_breakdown_come_from_the_ledger(api: Api) -> None:
    batch_id = await api.submit([job(1)])
    async with api.engine.begin() as conn:  # 1 core for 1,250 s at 3.6 per core-hour = 1.25
        await conn.execute(billing_rates.insert().values(resource="cpu/site", version=1, rate=3.6,
                                                         time_effective=0.0))
        await conn.execute(daily_usage.insert().values(billing_project="default", user="alice",
                                                       day="2026-01-01", resource="cpu/site/1",
                                                       usage=1000 * 1_250_000))
        await conn.execute(batch_usage.insert().values(batch_id=batch_id, resource="cpu/site/1",
                                                       usage=1000 * 1_250_000))
    projects = (await api.client.get("/api/v1/billing-projects")).json()
    assert [(p["billing_project"], p["users"], p["accrued_cost"]) for p in projects] == [
        ("default", ["alice"], 1.25)
    ]
    status = (await api.client.get(f"/api/v1/batches/{batch_id}")).json()
    assert status["cost_breakdown"] == [{"resource": "cpu/site/1", "cost": 1.25, "usage": 1_250_000_000}]
