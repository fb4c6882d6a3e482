"""Every bad submission is a 4xx naming the field, and leaves the store exactly as it was."""

from __future__ import annotations

from typing import Any

import pytest
from test_api_support import MAX_BODY_BYTES, Api, api_fixture, job, row_counts  # noqa: F401


async def _open_update(api: Api, n_jobs: int) -> tuple[int, int]:
    r = await api.client.post("/api/v1/batches/create", json={"token": "open", "n_jobs": n_jobs})
    assert r.status_code == 200, r.text
    return r.json()["id"], r.json()["update_id"]


def _assert_error(r: Any, status: int, field: str, *words: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["field"] == field, body
    assert field.split("[")[0] in body["message"] or field in body["message"], body
    for word in words:
        assert word in body["message"], body


BAD_BUNCHES: list[tuple[str, list[dict[str, Any]], str, tuple[str, ...]]] = [
    ("unknown parent", [job(1), job(2, [7])], "bunch[1].in_update_parent_ids", ("unknown job 7",)),
    ("own parent", [job(1), job(2, [2])], "bunch[1].in_update_parent_ids", ("itself",)),
    ("cycle", [job(1, [3]), job(2, [1]), job(3, [2])], "bunch.in_update_parent_ids", ("cycle",)),
    (
        "unknown absolute parent",
        [job(1), job(2, absolute_parent_ids=[9])],
        "bunch[1].absolute_parent_ids",
        ("unknown parent 9",),
    ),
    ("id out of range", [job(1), job(5)], "bunch[1].job_id", ("out of range",)),
    ("duplicate id", [job(1), job(1)], "bunch[1].job_id", ("twice",)),
    ("bad cpu", [job(1), job(2, resources={"cpu": "lots"})], "bunch[1].resources.cpu", ("'lots'",)),
    ("bad memory", [job(1), job(2, resources={"memory": "12 parsecs"})], "bunch[1].resources.memory", ()),
    ("bad storage", [job(1), job(2, resources={"storage": "-1Gi"})], "bunch[1].resources.storage", ()),
    ("n_max_attempts", [job(1), job(2, n_max_attempts=0)], "bunch[1].n_max_attempts", ()),
    (
        "missing command",
        [job(1), {"job_id": 2, "process": {"type": "docker"}}],
        "bunch[1].process.command",
        ("required",),
    ),
    ("timeout", [job(1), job(2, timeout=-1)], "bunch[1].timeout", ("positive",)),
    (
        "bad image",
        [job(1), job(2, process={"type": "docker", "image": "Ubuntu:24 .04", "command": ["true"]})],
        "bunch[1].process.image",
        ("not an image reference", "ubuntu:24.04"),
    ),
    ("bad network", [job(1), job(2, network="host")], "bunch[1].network", ("'host'", "private")),
]


@pytest.mark.parametrize(("case", "bunch", "field", "words"), BAD_BUNCHES, ids=[c[0] for c in BAD_BUNCHES])
async def test_bad_create_fast_is_400_and_writes_nothing(
    api: Api, case: str, bunch: list[dict[str, Any]], field: str, words: tuple[str, ...]
) -> None:
    before = await row_counts(api.engine)
    spec = {"billing_project": "default", "token": case, "n_jobs": len(bunch)}
    r = await api.client.post("/api/v1/batches/create-fast", json={"batch": spec, "bunch": bunch})
    _assert_error(r, 400, field, *words)
    assert await row_counts(api.engine) == before
    assert api.hooks.committed == []


@pytest.mark.parametrize(("case", "bunch", "field", "words"), BAD_BUNCHES, ids=[c[0] for c in BAD_BUNCHES])
async def test_bad_bunch_is_400_and_writes_nothing(
    api: Api, case: str, bunch: list[dict[str, Any]], field: str, words: tuple[str, ...]
) -> None:
    batch_id, update_id = await _open_update(api, 3)
    before = await row_counts(api.engine)
    r = await api.client.post(f"/api/v1/batches/{batch_id}/updates/{update_id}/jobs/create", json=bunch)
    _assert_error(r, 400, field, *words)
    assert await row_counts(api.engine) == before


async def test_bunch_overlapping_an_earlier_bunch_is_400(api: Api) -> None:
    batch_id, update_id = await _open_update(api, 4)
    url = f"/api/v1/batches/{batch_id}/updates/{update_id}/jobs/create"
    assert (await api.client.post(url, json=[job(1), job(2)])).status_code == 200
    before = await row_counts(api.engine)
    r = await api.client.post(url, json=[job(2), job(3)])
    _assert_error(r, 400, "bunch[0].job_id", "already inserted")
    assert await row_counts(api.engine) == before


async def test_cycle_across_bunches_is_refused_at_commit(api: Api) -> None:
    batch_id, update_id = await _open_update(api, 2)
    url = f"/api/v1/batches/{batch_id}/updates/{update_id}/jobs/create"
    assert (await api.client.post(url, json=[job(1, [2])])).status_code == 200
    assert (await api.client.post(url, json=[job(2, [1])])).status_code == 200
    r = await api.client.patch(f"/api/v1/batches/{batch_id}/updates/{update_id}/commit")
    _assert_error(r, 400, "bunch.in_update_parent_ids", "cycle")
    status = (await api.client.get(f"/api/v1/batches/{batch_id}")).json()
    assert (status["closed"], status["n_jobs"]) == (False, 0)
    assert api.hooks.committed == []


async def test_commit_with_missing_jobs_says_how_many(api: Api) -> None:
    batch_id, update_id = await _open_update(api, 5)
    url = f"/api/v1/batches/{batch_id}/updates/{update_id}/jobs/create"
    assert (await api.client.post(url, json=[job(1), job(2)])).status_code == 200
    before = await row_counts(api.engine)
    r = await api.client.patch(f"/api/v1/batches/{batch_id}/updates/{update_id}/commit")
    _assert_error(r, 400, "n_jobs", "3 job(s) are missing")
    assert await row_counts(api.engine) == before
    status = (await api.client.get(f"/api/v1/batches/{batch_id}")).json()
    assert (status["state"], status["n_jobs"]) == ("open", 0)


async def test_create_fast_with_wrong_n_jobs_or_unknown_billing_project(api: Api) -> None:
    before = await row_counts(api.engine)
    r = await api.client.post(
        "/api/v1/batches/create-fast", json={"batch": {"token": "a", "n_jobs": 3}, "bunch": [job(1), job(2)]}
    )
    _assert_error(r, 400, "batch.n_jobs", "3")
    r = await api.client.post(
        "/api/v1/batches/create-fast",
        json={"batch": {"token": "b", "billing_project": "ghost", "n_jobs": 1}, "bunch": [job(1)]},
    )
    _assert_error(r, 400, "batch.billing_project", "ghost")
    r = await api.client.post("/api/v1/batches/create-fast", json={"batch": {"n_jobs": 1}, "bunch": [job(1)]})
    _assert_error(r, 400, "batch.token", "required")
    assert await row_counts(api.engine) == before


async def test_body_too_large_is_413(api: Api) -> None:
    batch_id, update_id = await _open_update(api, 2)
    before = await row_counts(api.engine)
    huge = [job(1, command="x" * MAX_BODY_BYTES), job(2)]
    r = await api.client.post(f"/api/v1/batches/{batch_id}/updates/{update_id}/jobs/create", json=huge)
    _assert_error(r, 413, "body", "larger than")

    async def chunks():  # type: ignore[no-untyped-def]  # streamed: no Content-Length to check up front
        for _ in range(MAX_BODY_BYTES // 65536 + 2):
            yield b" " * 65536

    r = await api.client.post(f"/api/v1/batches/{batch_id}/updates/{update_id}/jobs/create", content=chunks())
    _assert_error(r, 413, "body", "larger than")
    assert await row_counts(api.engine) == before


async def test_malformed_bodies_are_400(api: Api) -> None:
    batch_id, update_id = await _open_update(api, 2)
    url = f"/api/v1/batches/{batch_id}/updates/{update_id}/jobs/create"
    r = await api.client.post(url, content=b"[{", headers={"content-type": "application/json"})
    _assert_error(r, 400, "body", "JSON")
    r = await api.client.post(url, json={"job_id": 1})
    _assert_error(r, 400, "bunch", "list")
    r = await api.client.post(
        "/api/v1/batches/create", content=b"{nope", headers={"content-type": "application/json"}
    )
    assert r.status_code == 400 and r.json()["error"] == "InvalidInput"


async def test_bunch_to_committed_update_or_cancelled_batch_is_409(api: Api) -> None:
    batch_id = await api.submit([job(1)])
    r = await api.client.post(f"/api/v1/batches/{batch_id}/updates/1/jobs/create", json=[job(1)])
    assert r.status_code == 409 and r.json()["field"] == "update_id"
    assert (await api.client.patch(f"/api/v1/batches/{batch_id}/cancel")).is_success
    r = await api.client.post(f"/api/v1/batches/{batch_id}/updates/create", json={"token": "u", "n_jobs": 1})
    assert r.status_code == 409 and "cancelled" in r.json()["message"]
    r = await api.client.post(f"/api/v1/batches/{batch_id}/updates/9/jobs/create", json=[job(1)])
    assert r.status_code == 404 and r.json()["field"] == "update_id"
