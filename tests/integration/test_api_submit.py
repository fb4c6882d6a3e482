"""Submitting batches: create-fast, create + bunches + commit, idempotency, updates with earlier parents."""

from __future__ import annotations

import time

from test_api_support import Api, api_fixture, job, job_rows, parent_links, row_counts  # noqa: F401

from corral.store import instances as instance_store
from transition_guard import walk_to


async def test_create_fast_writes_the_job_row_contract(api: Api) -> None:
    async with api.engine.begin() as conn:  # jobs may name only pools the site has
        await instance_store.ensure_collection(conn, "gpu", kind="pool", provider="test", config={})
    bunch = [
        job(
            1,
            name="root",
            env=[{"name": "K", "value": "V"}],
            timeout=30,
            input_files=[{"from": "gs://b/in", "to": "/io/in"}],
            attributes={"stage": "a"},
        ),
        job(
            2,
            [1],
            always_run=True,
            n_max_attempts=3,
            pool="gpu",
            resources={"cpu": "2", "memory": "standard", "storage": "10Gi"},
        ),
        job(3, [1, 2], output_files=[{"from": "/io/out", "to": "gs://b/out"}], always_copy_output=True),
    ]
    r = await api.client.post(
        "/api/v1/batches/create-fast",
        json={
            "batch": {
                "billing_project": "default",
                "token": "tok",
                "n_jobs": 3,
                "attributes": {"name": "demo"},
            },
            "bunch": bunch,
        },
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["update_id"], body["start_job_id"]) == (1, 1)
    batch_id = body["id"]
    assert api.hooks.committed == [batch_id]
    rows = await job_rows(api.engine, batch_id)
    assert {j: rows[j].state for j in rows} == {1: "Ready", 2: "Pending", 3: "Pending"}
    assert {j: rows[j].n_pending_parents for j in rows} == {1: 0, 2: 1, 3: 2}
    assert not any(rows[j].parent_failed for j in rows)
    assert rows[1].spec == {
        "command": ["/bin/bash", "-c", "true"],
        "image": "ubuntu:24.04",
        "env": {"K": "V"},
        "timeout": 30.0,
        "input_files": [{"from": "gs://b/in", "to": "/io/in"}],
        "output_files": [],
        "always_copy_output": False,
        "network": None,
    }
    assert rows[1].name == "root" and rows[1].attributes == {"stage": "a", "name": "root"}
    assert (rows[1].pool, rows[1].cores_mcpu, rows[1].memory_bytes) == ("default", 500, 256 * 1024**2)
    assert (rows[2].pool, rows[2].cores_mcpu, rows[2].memory_bytes, rows[2].storage_bytes) == (
        "gpu",
        2000,
        8 * 1024**3,
        10 * 1024**3,
    )
    assert rows[2].always_run and rows[2].n_max_attempts == 3 and rows[2].user == "alice"
    assert rows[3].spec["always_copy_output"] is True
    assert await parent_links(api.engine, batch_id) == {(2, 1), (3, 1), (3, 2)}
    status = (await api.client.get(f"/api/v1/batches/{batch_id}")).json()
    assert status["state"] == "running" and status["closed"] and not status["complete"]
    assert status["n_jobs"] == 3 and status["attributes"] == {"name": "demo"}
    assert status["time_closed"].endswith("Z")


async def test_create_fast_is_idempotent_on_token(api: Api) -> None:
    payload = {
        "batch": {"billing_project": "default", "token": "same", "n_jobs": 2},
        "bunch": [job(1), job(2)],
    }
    first = await api.client.post("/api/v1/batches/create-fast", json=payload)
    second = await api.client.post("/api/v1/batches/create-fast", json=payload)
    assert first.status_code == second.status_code == 200
    assert first.json()["id"] == second.json()["id"]
    counts = await row_counts(api.engine)
    assert (counts["batches"], counts["jobs"]) == (1, 2)
    status = (await api.client.get(f"/api/v1/batches/{first.json()['id']}")).json()
    assert status["n_jobs"] == 2


async def test_large_batch_in_bunches_then_commit(api: Api) -> None:
    n, size = 20_000, 5_000
    started = time.monotonic()
    r = await api.client.post(
        "/api/v1/batches/create", json={"billing_project": "default", "token": "big", "n_jobs": n}
    )
    assert r.status_code == 200, r.text
    batch_id, update_id = r.json()["id"], r.json()["update_id"]
    again = await api.client.post(
        "/api/v1/batches/create", json={"billing_project": "default", "token": "big", "n_jobs": n}
    )
    assert (again.json()["id"], again.json()["update_id"]) == (batch_id, update_id)
    assert (await api.client.get(f"/api/v1/batches/{batch_id}")).json()["state"] == "open"
    for start in range(1, n + 1, size):
        # Every job after the first depends on the one before it: a chain across bunches.
        bunch = [job(j, [j - 1] if j > 1 else []) for j in range(start, start + size)]
        r = await api.client.post(f"/api/v1/batches/{batch_id}/updates/{update_id}/jobs/create", json=bunch)
        assert r.status_code == 200, r.text
        assert r.json() == {"inserted": size}
    # A retried bunch (same jobs) changes nothing.
    retry = [job(j, [j - 1]) for j in range(size + 1, 2 * size + 1)]
    r = await api.client.post(f"/api/v1/batches/{batch_id}/updates/{update_id}/jobs/create", json=retry)
    assert r.status_code == 200 and r.json() == {"inserted": 0}
    assert api.hooks.committed == []
    r = await api.client.patch(f"/api/v1/batches/{batch_id}/updates/{update_id}/commit")
    assert r.status_code == 200, r.text
    elapsed = time.monotonic() - started
    assert api.hooks.committed == [batch_id]
    counts = await row_counts(api.engine)
    assert (counts["jobs"], counts["job_parents"]) == (n, n - 1)
    rows = await job_rows(api.engine, batch_id)
    assert [j for j, row in rows.items() if row.state == "Ready"] == [1]
    status = (await api.client.get(f"/api/v1/batches/{batch_id}")).json()
    assert (status["n_jobs"], status["state"]) == (n, "running")
    # Committing again is harmless and does not wake the driver twice.
    assert (await api.client.patch(f"/api/v1/batches/{batch_id}/updates/{update_id}/commit")).is_success
    assert api.hooks.committed == [batch_id]
    assert elapsed < 60, f"{n} jobs took {elapsed:.1f}s"


async def test_update_appends_jobs_with_parents_in_earlier_updates(api: Api) -> None:
    batch_id = await api.submit([job(1), job(2), job(3)])
    async with api.engine.begin() as conn:  # as the driver would: 1 succeeded, 2 failed, 3 still running
        for job_id, state in ((1, "Success"), (2, "Failed"), (3, "Running")):
            await walk_to(conn, batch_id, [job_id], state)
    r = await api.client.post(f"/api/v1/batches/{batch_id}/updates/create", json={"token": "u2", "n_jobs": 4})
    assert r.status_code == 200, r.text
    assert r.json()["start_job_id"] == 4
    update_id = r.json()["update_id"]
    same = await api.client.post(
        f"/api/v1/batches/{batch_id}/updates/create", json={"token": "u2", "n_jobs": 4}
    )
    assert same.json() == r.json()
    bunch = [
        job(1, absolute_parent_ids=[1]),  # -> 4: parent succeeded: Ready at commit
        job(2, absolute_parent_ids=[2]),  # -> 5: parent failed
        job(3, absolute_parent_ids=[3]),  # -> 6: parent running, completes before the commit
        job(4, [1], absolute_parent_ids=[3]),  # -> 7: in-update parent 4 and earlier parent 3
    ]
    r = await api.client.post(f"/api/v1/batches/{batch_id}/updates/{update_id}/jobs/create", json=bunch)
    assert r.status_code == 200, r.text
    rows = await job_rows(api.engine, batch_id)
    assert {j: rows[j].state for j in range(4, 8)} == dict.fromkeys(range(4, 8), "Pending")
    assert {j: rows[j].n_pending_parents for j in range(4, 8)} == {4: 0, 5: 0, 6: 1, 7: 2}
    assert rows[5].parent_failed and not rows[4].parent_failed
    status = (await api.client.get(f"/api/v1/batches/{batch_id}")).json()
    assert status["n_jobs"] == 3  # not committed yet
    async with api.engine.begin() as conn:
        await walk_to(conn, batch_id, [3], "Success")
    r = await api.client.patch(f"/api/v1/batches/{batch_id}/updates/{update_id}/commit")
    assert r.status_code == 200, r.text
    rows = await job_rows(api.engine, batch_id)
    assert {j: rows[j].state for j in range(4, 8)} == {4: "Ready", 5: "Ready", 6: "Ready", 7: "Pending"}
    assert {j: rows[j].n_pending_parents for j in range(4, 8)} == {4: 0, 5: 0, 6: 0, 7: 1}
    assert await parent_links(api.engine, batch_id) == {(4, 1), (5, 2), (6, 3), (7, 4), (7, 3)}
    assert api.hooks.committed == [batch_id, batch_id]
    assert (await api.client.get(f"/api/v1/batches/{batch_id}")).json()["n_jobs"] == 7


async def test_update_fast_appends_and_commits_in_one_call(api: Api) -> None:
    batch_id = await api.submit([job(1)])
    payload = {
        "update": {"token": "uf", "n_jobs": 2},
        "bunch": [job(1, absolute_parent_ids=[1]), job(2, [1])],
    }
    r = await api.client.post(f"/api/v1/batches/{batch_id}/update-fast", json=payload)
    assert r.status_code == 200, r.text
    assert (r.json()["update_id"], r.json()["start_job_id"]) == (2, 2)
    again = await api.client.post(f"/api/v1/batches/{batch_id}/update-fast", json=payload)
    assert again.json() == r.json()
    assert await parent_links(api.engine, batch_id) == {(2, 1), (3, 2)}
    assert (await row_counts(api.engine))["jobs"] == 3
    assert (await api.client.get(f"/api/v1/batches/{batch_id}")).json()["n_jobs"] == 3


async def test_jobs_of_an_uncommitted_update_are_not_listed(api: Api) -> None:
    r = await api.client.post("/api/v1/batches/create", json={"token": "open", "n_jobs": 2})
    batch_id, update_id = r.json()["id"], r.json()["update_id"]
    await api.client.post(
        f"/api/v1/batches/{batch_id}/updates/{update_id}/jobs/create", json=[job(1), job(2)]
    )
    assert (await api.client.get(f"/api/v1/batches/{batch_id}/jobs")).json()["jobs"] == []
    assert (await api.client.get(f"/api/v1/batches/{batch_id}/jobs/1")).status_code == 404
    await api.client.patch(f"/api/v1/batches/{batch_id}/updates/{update_id}/commit")
    assert len((await api.client.get(f"/api/v1/batches/{batch_id}/jobs")).json()["jobs"]) == 2
