"""Service job specs over REST: a bad service or ready-parent is a 400 naming the field, writes nothing;
a good one stores the checked service and a when_ready link."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select
from test_api_support import Api, api_fixture, job, row_counts  # noqa: F401

from corral.store.tables import job_parents

SVC = {"ports": ["main"], "probes": [{"kind": "tcp", "port": "main"}]}

BAD: list[tuple[str, list[dict[str, Any]], str, str]] = [
    (
        "unknown service field",
        [job(1, service={"ports": ["main"], "probez": []})],
        "bunch[0].service.probez",
        "unknown service field",
    ),
    ("bad port name", [job(1, service={"ports": ["Main port"]})], "bunch[0].service.ports[0]", "port name"),
    (
        "probe on unknown port",
        [job(1, service={"ports": ["main"], "probes": [{"kind": "tcp", "port": "x"}]})],
        "bunch[0].service.probes[0].port",
        "not one of the service's ports",
    ),
    (
        "bad probe kind",
        [job(1, service={"probes": [{"kind": "ping"}]})],
        "bunch[0].service.probes[0].kind",
        "not a probe kind",
    ),
    (
        "bad regex",
        [job(1, service={"probes": [{"kind": "log", "pattern": "("}]})],
        "bunch[0].service.probes[0].pattern",
        "regular expression",
    ),
    (
        "negative deadline",
        [job(1, service={"ready_deadline": -1})],
        "bunch[0].service.ready_deadline",
        "seconds",
    ),
    (
        "waits on a non-service",
        [job(1), job(2, ready_parents=[{"job_id": 1}])],
        "bunch[1].ready_parents[0].job_id",
        "not a service",
    ),
    (
        "bad placement",
        [job(1, service=SVC), job(2, ready_parents=[{"job_id": 1, "placement": "near"}])],
        "bunch[1].ready_parents[0].placement",
        "same",
    ),
]


@pytest.mark.parametrize(("case", "bunch", "field", "words"), BAD, ids=[c[0] for c in BAD])
async def test_bad_service_spec_is_400_naming_the_field(
    api: Api, case: str, bunch: list[dict[str, Any]], field: str, words: str
) -> None:
    before = await row_counts(api.engine)
    spec = {"billing_project": "default", "token": case, "n_jobs": len(bunch)}
    r = await api.client.post("/api/v1/batches/create-fast", json={"batch": spec, "bunch": bunch})
    assert r.status_code == 400, r.text
    body = r.json()
    assert body["field"] == field, body
    assert words in body["message"], body
    assert await row_counts(api.engine) == before


async def test_service_and_ready_link_are_stored(api: Api) -> None:
    bunch = [job(1, service=SVC, name="db"), job(2, ready_parents=[{"job_id": 1, "placement": "other"}])]
    spec = {"billing_project": "default", "token": "good", "n_jobs": 2}
    r = await api.client.post("/api/v1/batches/create-fast", json={"batch": spec, "bunch": bunch})
    assert r.status_code == 200, r.text
    batch_id = r.json()["id"]
    svc = (await api.client.get(f"/api/v1/batches/{batch_id}/jobs/1")).json()
    assert svc["spec"]["service"]["ports"] == ["main"] and svc["spec"]["service"]["grace_period"] == 10.0
    assert svc["spec"]["service_name"] == "db" and svc["serving"] is False and svc["endpoint"] is None
    client = (await api.client.get(f"/api/v1/batches/{batch_id}/jobs/2")).json()
    assert client["state"] == "Pending"
    assert client["spec"]["service_links"] == [{"job_id": 1, "placement": "other"}]
    async with api.engine.connect() as conn:
        rows = list(await conn.execute(select(job_parents).where(job_parents.c.batch_id == batch_id)))
    assert [(r.job_id, r.parent_id, bool(r.when_ready)) for r in rows] == [(2, 1, True)]
