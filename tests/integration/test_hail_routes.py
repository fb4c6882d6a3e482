"""The Hail-compatible routes in-process on SQLite and PostgreSQL: job groups (reserved id ranges,
nesting, roll-ups, group cancel, bad specs leave the store unchanged) and the bucket mapping."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine
from test_api_support import job, job_rows

from corral.api.app import create_app
from corral.api.bootstrap import bootstrap
from corral.config import Settings
from corral.hail.routes import hail_routers
from corral.store import job_groups as group_store
from corral.store.tables import batches, job_groups, jobs
from transition_guard import walk_to

API = "/api/v1alpha"


@dataclass
class Hooks:
    committed: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)
    groups_cancelled: list[tuple[int, set[int]]] = field(default_factory=list)

    async def batch_committed(self, batch_id: int) -> None:
        self.committed.append(batch_id)

    async def batch_cancelled(self, batch_id: int) -> None:
        self.cancelled.append(batch_id)

    async def job_groups_cancelled(self, batch_id: int, job_group_ids: set[int]) -> None:
        self.groups_cancelled.append((batch_id, job_group_ids))


@dataclass
class HailApi:
    client: httpx.AsyncClient
    engine: AsyncEngine
    hooks: Hooks
    home: Path


@pytest.fixture
async def hail(engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[HailApi]:
    settings = Settings(home=tmp_path / "home", admin_user="admin", default_user="alice",
                        buckets={"lab": "file:///srv/lab"})
    tokens = await bootstrap(engine, settings)
    hooks = Hooks()
    app = create_app(settings, engine, hooks, extra_routers=hail_routers())
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://corral.test",
        headers={"Authorization": f"Bearer {tokens['token']}"}, timeout=60,
    ) as client:
        yield HailApi(client, engine, hooks, settings.home)


async def _counts(engine: AsyncEngine) -> tuple[int, int, int]:
    async with engine.connect() as conn:
        found = [
            int((await conn.execute(select(func.count()).select_from(t))).scalar_one())
            for t in (batches, jobs, job_groups)
        ]
    return found[0], found[1], found[2]


def _groups_request(token: str, bunch: list[dict[str, Any]], groups: list[dict[str, Any]]) -> dict[str, Any]:
    return {"batch": {"billing_project": "default", "token": token, "n_jobs": len(bunch),
                      "n_job_groups": len(groups)}, "bunch": bunch, "job_groups": groups}


async def test_nested_groups_roll_up_and_cancel_as_a_group(hail: HailApi) -> None:
    groups = [{"job_group_id": 1, "in_update_parent_id": 0, "attributes": {"name": "outer"}},
              {"job_group_id": 2, "in_update_parent_id": 1, "attributes": {"name": "inner"}}]
    bunch = [job(1, in_update_job_group_id=0), job(2, in_update_job_group_id=1),
             job(3, [2], in_update_job_group_id=2)]
    r = await hail.client.post(f"{API}/batches/create-fast", json=_groups_request("g1", bunch, groups))
    assert r.status_code == 200, r.text
    batch_id = r.json()["id"]
    assert r.json()["start_job_group_id"] == 1
    rows = await job_rows(hail.engine, batch_id)
    assert {j: rows[j].job_group_id for j in rows} == {1: 0, 2: 1, 3: 2}
    outer = (await hail.client.get(f"{API}/batches/{batch_id}/job-groups/1")).json()
    assert (outer["n_jobs"], outer["state"], outer["attributes"]) == (2, "running", {"name": "outer"})
    children = (await hail.client.get(f"{API}/batches/{batch_id}/job-groups/1/job-groups")).json()
    assert [g["job_group_id"] for g in children["job_groups"]] == [2]
    group_jobs = f"{API}/batches/{batch_id}/job-groups/1/jobs"
    listed = await hail.client.get(group_jobs, params={"recursive": "True"})
    assert [j["job_id"] for j in listed.json()["jobs"]] == [2, 3]
    own = await hail.client.get(group_jobs, params={"recursive": "False"})
    assert [j["job_id"] for j in own.json()["jobs"]] == [2]

    r = await hail.client.patch(f"{API}/batches/{batch_id}/job-groups/1/cancel")
    assert r.status_code == 200, r.text
    assert hail.hooks.groups_cancelled == [(batch_id, {1, 2})]
    async with hail.engine.connect() as conn:
        assert await group_store.cancelled_with_work(conn) == {batch_id: {1, 2}}  # the driver's rebuild
    cancelled = (await hail.client.get(f"{API}/batches/{batch_id}/job-groups/2")).json()
    assert cancelled["state"] == "cancelled"
    before = await _counts(hail.engine)
    late = {"update": {"n_jobs": 1, "token": "late"}, "job_groups": [],
            "bunch": [job(1, absolute_job_group_id=2)]}
    r = await hail.client.post(f"{API}/batches/{batch_id}/update-fast", json=late)
    assert r.status_code == 400 and "cancelled" in r.json()["message"], r.text
    assert await _counts(hail.engine) == before


async def test_bunch_path_reserves_group_ids_and_commit_needs_every_group(hail: HailApi) -> None:
    r = await hail.client.post(f"{API}/batches/create", json={
        "billing_project": "default", "token": "slow", "n_jobs": 1, "n_job_groups": 2})
    body = r.json()
    batch_id, update_id = body["id"], body["update_id"]
    assert body["start_job_group_id"] == 1
    groups_url = f"{API}/batches/{batch_id}/updates/{update_id}/job-groups/create"
    r = await hail.client.post(groups_url, json=[{"job_group_id": 1, "in_update_parent_id": 0}])
    assert r.status_code == 200, r.text
    r = await hail.client.post(f"{API}/batches/{batch_id}/updates/{update_id}/jobs/create",
                               json=[job(1, in_update_job_group_id=1)])
    assert r.status_code == 200, r.text
    r = await hail.client.patch(f"{API}/batches/{batch_id}/updates/{update_id}/commit")
    assert r.status_code == 400 and r.json()["field"] == "job_groups", r.text  # group 2 never sent
    r = await hail.client.post(groups_url, json=[{"job_group_id": 2, "in_update_parent_id": 1}])
    assert r.status_code == 200, r.text
    r = await hail.client.patch(f"{API}/batches/{batch_id}/updates/{update_id}/commit")
    assert r.status_code == 200 and r.json()["start_job_group_id"] == 1, r.text
    # the next update's groups follow on from 3
    r = await hail.client.post(f"{API}/batches/{batch_id}/updates/create",
                               json={"n_jobs": 1, "n_job_groups": 1, "token": "u2"})
    assert r.json()["start_job_group_id"] == 3


@pytest.mark.parametrize(("groups", "field"), [
    ([{"job_group_id": 1, "in_update_parent_id": 1}], "job_groups[0].in_update_parent_id"),
    ([{"job_group_id": 1, "absolute_parent_id": 7}], "job_groups[0].absolute_parent_id"),
    ([{"job_group_id": 1, "cancel_after_n_failures": 0}], "job_groups[0].cancel_after_n_failures"),
])
async def test_bad_group_specs_are_400_and_change_nothing(
    hail: HailApi, groups: list[dict[str, Any]], field: str
) -> None:
    before = await _counts(hail.engine)
    r = await hail.client.post(f"{API}/batches/create-fast",
                               json=_groups_request("bad", [job(1, in_update_job_group_id=1)], groups))
    assert r.status_code == 400 and r.json()["field"] == field, r.text
    assert await _counts(hail.engine) == before


async def test_bucket_urls_become_storage_urls_and_unmapped_buckets_are_refused(hail: HailApi) -> None:
    bunch = [job(1, input_files=[{"from": "gs://corral-local/in.txt", "to": "/io/in.txt"}],
                 output_files=[{"from": "/io/out", "to": "gs://lab/results/out"}])]
    r = await hail.client.post(f"{API}/batches/create-fast", json=_groups_request("files", bunch, []))
    assert r.status_code == 200, r.text
    spec = (await job_rows(hail.engine, r.json()["id"]))[1].spec
    local = (hail.home / "buckets" / "corral-local").as_uri()
    assert spec["input_files"] == [{"from": f"{local}/in.txt", "to": "/io/in.txt"}]
    assert spec["output_files"] == [{"from": "/io/out", "to": "file:///srv/lab/results/out"}]
    before = await _counts(hail.engine)
    bad = [job(1, input_files=[{"from": "gs://nowhere/x", "to": "/io/x"}])]
    r = await hail.client.post(f"{API}/batches/create-fast", json=_groups_request("nowhere", bad, []))
    assert r.status_code == 400 and r.json()["field"] == "bunch[0].input_files[0].from", r.text
    assert await _counts(hail.engine) == before


async def test_hail_user_gets_a_token_and_the_default_billing_project(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    from corral.hail.compat_dir import hail_user_token
    from corral.store import users as user_store

    settings = Settings(home=tmp_path / "home", admin_user="admin", default_user="alice", hail_user="bob",
                        hail_compat_dir=tmp_path / "hail")
    tokens = await bootstrap(engine, settings)
    token = await hail_user_token(engine, settings, tokens)
    assert token not in (tokens["token"], tokens["admin_token"])
    async with engine.connect() as conn:
        assert await user_store.is_billing_project_member(conn, "default", "bob")
    settings.hail_user = None
    assert await hail_user_token(engine, settings, tokens) == tokens["token"]  # the default user's own


async def test_native_api_refuses_job_groups_it_does_not_have(hail: HailApi) -> None:
    spec = {"billing_project": "default", "token": "native", "n_jobs": 1}
    r = await hail.client.post("/api/v1/batches/create-fast",
                               json={"batch": spec, "bunch": [job(1, absolute_job_group_id=3)]})
    assert r.status_code == 400 and r.json()["field"] == "bunch[0].absolute_job_group_id", r.text
    r = await hail.client.post("/api/v1/batches/create-fast",
                               json={"batch": spec, "bunch": [job(1, in_update_job_group_id=0)]})
    assert r.status_code == 200, r.text


async def test_unknown_hail_endpoints_say_so_with_a_404(hail: HailApi) -> None:
    for method, path in (("GET", f"{API}/batches/1/jobs/1/resource_usage"), ("POST", f"{API}/nothing"),
                         ("DELETE", "/hail/batch/api/v2alpha/batches/1/x")):
        r = await hail.client.request(method, path)
        assert r.status_code == 404 and path in r.json()["message"], r.text
    r = await hail.client.patch(f"{API}/batches/1/jobs")  # a known path with another method
    assert 400 <= r.status_code < 500, r.text


async def test_group_failure_limit_cancels_that_group_tree_only(hail: HailApi) -> None:
    groups = [{"job_group_id": 1, "in_update_parent_id": 0, "cancel_after_n_failures": 2},
              {"job_group_id": 2, "in_update_parent_id": 1}, {"job_group_id": 3, "in_update_parent_id": 0}]
    bunch = [job(i, in_update_job_group_id=i) for i in (1, 2, 3)]
    r = await hail.client.post(f"{API}/batches/create-fast", json=_groups_request("limit", bunch, groups))
    batch_id = r.json()["id"]
    async with hail.engine.begin() as conn:
        await walk_to(conn, batch_id, [1], "Failed")
        assert await group_store.cancel_over_failure_limit(conn, [batch_id]) == {}  # 1 failure of 2
        await walk_to(conn, batch_id, [2], "Error")
        assert await group_store.cancel_over_failure_limit(conn, [batch_id]) == {batch_id: {1, 2}}
        assert await group_store.cancel_over_failure_limit(conn, [batch_id]) == {}  # already cancelled


async def test_updates_reserve_consecutive_disjoint_group_ranges(hail: HailApi) -> None:
    import asyncio

    r = await hail.client.post(f"{API}/batches/create", json={"billing_project": "default", "token": "c"})
    batch_id = r.json()["id"]
    replies = await asyncio.gather(*[
        hail.client.post(f"{API}/batches/{batch_id}/updates/create",
                         json={"n_jobs": 1, "n_job_groups": 3, "token": f"u{i}"})
        for i in range(6)
    ])
    starts = sorted(reply.json()["start_job_group_id"] for reply in replies)
    assert starts == [1, 4, 7, 10, 13, 16], starts
