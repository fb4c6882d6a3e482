"""Hostile input is a 4xx naming what is wrong, the same on SQLite and PostgreSQL, and stores nothing:
integers no column can hold, sizes no machine has, text no store can keep, names no process can use."""

from __future__ import annotations

import json
from typing import Any

import pytest
from test_api_support import Api, api_fixture, job, row_counts  # noqa: F401

BIG = 2**63


def _fast(bunch: list[dict[str, Any]], **batch: Any) -> dict[str, Any]:
    spec = {"billing_project": "default", "token": "t", "n_jobs": len(bunch), **batch}
    return {"batch": spec, "bunch": bunch}


BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("memory 1e30", _fast([job(1, resources={"cpu": "1", "memory": 1e30})]), "bunch[0].resources.memory"),
    ("cpu 1e12", _fast([job(1, resources={"cpu": "1e12"})]), "bunch[0].resources.cpu"),
    ("storage 4 EiB+", _fast([job(1, resources={"storage": "99999999Ti"})]), "bunch[0].resources.storage"),
    ("env name A=B", _fast([job(1, env=[{"name": "A=B", "value": "1"}])]), "bunch[0].env[0].name"),
    ("env name empty", _fast([job(1, env=[{"name": "", "value": "1"}])]), "bunch[0].env[0].name"),
    ("job id 2**40", _fast([job(2**40)]), "bunch[0].job_id"),
    ("parent id 2**40", _fast([job(1, absolute_parent_ids=[2**40])]), "bunch[0].absolute_parent_ids[0]"),
    ("n_jobs 2**40", _fast([job(1)], n_jobs=2**40), "batch.n_jobs"),
    ("failures 2**40", _fast([job(1)], cancel_after_n_failures=2**40), "batch.cancel_after_n_failures"),
    ("name 600 chars", _fast([job(1, name="n" * 600)]), "bunch[0].name"),
    ("pool 200 chars", _fast([job(1, pool="p" * 200)]), "bunch[0].pool"),
    ("billing project 200 chars", _fast([job(1)], billing_project="b" * 200), "batch.billing_project"),
    ("token 300 chars", _fast([job(1)], token="t" * 300), "batch.token"),
    ("timeout 1e300", _fast([job(1, timeout=1e300)]), "bunch[0].timeout"),
    ("gpus 2**40", _fast([job(1, resources={"gpus": 2**40})]), "bunch[0].resources.gpus"),
]


@pytest.mark.parametrize(("case", "body", "field"), BODIES, ids=[c[0] for c in BODIES])
async def test_hostile_bodies_are_400_naming_the_field(
    api: Api, case: str, body: dict[str, Any], field: str
) -> None:
    before = await row_counts(api.engine)
    r = await api.client.post("/api/v1/batches/create-fast", json=body)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field, r.json()
    assert await row_counts(api.engine) == before


RAW = [
    ("NUL in a command", '"command": ["echo", "a\\u0000b"]', "body"),
    ("lone surrogate", '"command": ["echo", "\\ud800"]', "body"),
    ("Infinity", '"command": ["true"]}, "timeout": Infinity, "x": {"y": 1', "bunch[0].timeout"),
]


@pytest.mark.parametrize(("case", "fragment", "field"), RAW, ids=[c[0] for c in RAW])
async def test_text_no_store_can_keep_is_refused_on_both_stores(
    api: Api, case: str, fragment: str, field: str
) -> None:
    before = await row_counts(api.engine)
    text = ('{"batch": {"token": "t", "n_jobs": 1}, "bunch": [{"job_id": 1, '
            '"process": {"type": "docker", ' + fragment + "}}]}")
    r = await api.client.post("/api/v1/batches/create-fast", content=text.encode(),
                              headers={"Content-Type": "application/json"})
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field, r.json()
    assert await row_counts(api.engine) == before


def test_a_paired_surrogate_is_text_and_an_escaped_backslash_is_not_an_escape() -> None:
    from corral.api.hygiene import bad_json_text

    assert bad_json_text(json.dumps({"c": "\U0001F600"}).encode()) is None  # emoji: \\ud83d\\ude00
    assert bad_json_text(b'{"c": "\\\\u0000"}') is None  # the text backslash-u-0000, not NUL


URLS = [
    ("GET", f"/api/v1/batches/{BIG}", "batch_id"),
    ("GET", f"/api/v1/batches/1/jobs/{2**40}", "job_id"),
    ("GET", f"/api/v1/batches?last_batch_id={BIG}", "last_batch_id"),
    ("GET", f"/api/v1/batches/1/jobs?last_job_id={2**40}", "last_job_id"),
    ("GET", "/api/v1/batches?limit=99999999999999999999", "limit"),
    ("PATCH", f"/api/v1/batches/{BIG}/cancel", "batch_id"),
    ("GET", "/api/v1/batches?q=a%00b", "query"),
    ("GET", "/api/v1/batches?q=%ED%A0%80", "query"),
    ("GET", "/api/v1/batches/1/jobs/1/log/ma%00in", "path"),
]


@pytest.mark.parametrize(("method", "url", "field"), URLS, ids=[f"{m} {u}" for m, u, _ in URLS])
async def test_hostile_paths_and_queries_are_400(api: Api, method: str, url: str, field: str) -> None:
    r = await api.client.request(method, url)
    assert r.status_code == 400, r.text
    assert r.json()["field"] == field, r.json()


async def test_a_wrong_method_is_405_with_allow(api: Api) -> None:
    r = await api.client.request("PUT", "/api/v1/batches/create-fast")
    assert r.status_code == 405, r.text
    assert "POST" in r.headers["allow"]


async def test_the_openapi_documents_every_error_status_and_every_body(api: Api) -> None:
    spec = (await api.client.get("/openapi.json")).json()
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            statuses = set(operation["responses"])
            assert {"400", "401", "404", "405", "503"} <= statuses, (method, path, statuses)
            assert "422" not in statuses  # validation errors are 400s here
            if method in ("post", "put", "patch") and path.endswith(("/jobs/create", "/create-fast")):
                assert "requestBody" in operation, (method, path)


async def test_a_locked_sqlite_store_is_a_503_with_retry_after_and_nothing_lost(tmp_path: Any) -> None:
    import sqlite3

    import httpx
    from test_api_support import RecordingHooks

    from corral.api.app import create_app
    from corral.api.bootstrap import bootstrap
    from corral.config import Settings
    from corral.store.db import make_engine, migrate

    db_path = tmp_path / "locked.db"
    engine = make_engine(f"sqlite+aiosqlite:///{db_path}", busy_timeout_ms=200)
    await migrate(engine)
    settings = Settings(home=tmp_path / "home", admin_user="admin", default_user="alice")
    tokens = await bootstrap(engine, settings)
    app = create_app(settings, engine, RecordingHooks())
    holder = sqlite3.connect(db_path, isolation_level=None)
    try:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t",
                                     headers={"Authorization": f"Bearer {tokens['token']}"}) as client:
            holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock (a long driver tick)
            r = await client.post("/api/v1/batches/create-fast", json=_fast([job(1)]))
            assert r.status_code == 503, r.text
            assert r.headers["retry-after"] == "1" and r.json()["error"] == "StoreBusy"
            holder.execute("ROLLBACK")
            r = await client.post("/api/v1/batches/create-fast", json=_fast([job(1)]))
            assert r.status_code == 200, r.text
    finally:
        holder.close()
        await engine.dispose()
