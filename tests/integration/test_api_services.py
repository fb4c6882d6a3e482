"""Service job specs over REST: a bad service or ready-parent is a 400 naming the field, writes nothing;
a good one stores the checked service and a when_ready link."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import select, update
from test_api_support import Api, api_fixture, job, job_rows, row_counts  # noqa: F401

from corral.store.tables import job_parents, jobs

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
        "service without a network",
        [job(1, service=SVC, network="none")],
        "bunch[0].network",
        "must be reachable",
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
    assert svc["spec"]["network"] == "public"  # the instance's network, or a private one with forwarded ports
    client = (await api.client.get(f"/api/v1/batches/{batch_id}/jobs/2")).json()
    assert client["state"] == "Pending"
    assert client["spec"]["service_links"] == [{"job_id": 1, "placement": "other"}]
    async with api.engine.connect() as conn:
        rows = list(await conn.execute(select(job_parents).where(job_parents.c.batch_id == batch_id)))
    assert [(r.job_id, r.parent_id, bool(r.when_ready)) for r in rows] == [(2, 1, True)]


async def test_bench_routes_refuse_bad_input_with_400s(api: Api) -> None:
    recipe = {"name": "r", "service": {"type": "redis"}, "clients": [{"type": "redis-benchmark"}]}
    bad = {**recipe, "clients": [{"type": "redis-benchmark", "stop": {"min_requests": 0}}]}
    r = await api.client.post("/api/v1/bench/sessions", json={"name": "s", "recipe": bad})
    assert r.status_code == 400 and r.json()["field"] == "clients[0].stop.min_requests", r.text
    r = await api.client.post("/api/v1/bench/sessions", json={"name": "s\u0000", "recipe": recipe})
    assert r.status_code == 400, r.text
    r = await api.client.post(
        "/api/v1/bench/sessions", json={"name": "s", "recipe": recipe, "batch_id": 2**64}
    )
    assert r.status_code in (400, 422), r.text
    r = await api.client.post("/api/v1/bench/sessions", json={"name": "s", "recipe": recipe})
    assert r.status_code == 200, r.text
    sid = r.json()["id"]
    rows = [
        {"cell": "c1", "repetition": 1, "client": "x", "metric": "p50_ms", "value": 1.5, "unit": "ms"},
        {
            "cell": "c1",
            "repetition": 1,
            "client": "x",
            "metric": "throughput",
            "value": None,
            "unit": "req/s",
        },
    ]
    r = await api.client.put(f"/api/v1/bench/sessions/{sid}/results", json={"state": "failure", "rows": rows})
    assert r.status_code == 200, r.text
    got = (await api.client.get(f"/api/v1/bench/sessions/{sid}/results", params={"metric": "p50_ms"})).json()
    assert [(g["cell"], g["value"]) for g in got] == [("c1", 1.5)]
    assert (await api.client.get("/api/v1/bench/sessions/99999999999999999999999")).status_code == 404
    assert (await api.client.get("/api/v1/bench/sessions/nope")).status_code == 404


async def test_a_service_may_ask_for_a_private_network(api: Api) -> None:
    """Its ports are forwarded from the instance, so other jobs still reach it."""
    bunch = [job(1, service=SVC, network="private"), job(2, ready_parents=[{"job_id": 1}])]
    spec = {"billing_project": "default", "token": "private", "n_jobs": 2}
    r = await api.client.post("/api/v1/batches/create-fast", json={"batch": spec, "bunch": bunch})
    assert r.status_code == 200, r.text
    batch_id = r.json()["id"]
    svc = (await api.client.get(f"/api/v1/batches/{batch_id}/jobs/1")).json()
    client = (await api.client.get(f"/api/v1/batches/{batch_id}/jobs/2")).json()
    assert svc["spec"]["network"] == "private" and client["spec"]["network"] == "public"


async def _set_service(api: Api, batch_id: int, state: str, *, serving: bool) -> None:
    """Stand in for the driver: the service job's row as it is while serving, or after it ended."""
    endpoint = {"host": "192.0.2.7", "ports": {"main": 6379}, "scheme": "redis"}
    row = (jobs.c.batch_id == batch_id) & (jobs.c.job_id == 1)
    async with api.engine.begin() as conn:  # the moves the store allows: Ready -> Running (-> Success)
        await conn.execute(update(jobs).where(row).values(state="Running"))
        if serving:
            await conn.execute(update(jobs).where(row).values(endpoint=endpoint, time_serving=1.0))
        if state != "Running":
            await conn.execute(update(jobs).where(row).values(state=state))


@pytest.mark.parametrize("service_state", ["serving", "Success", "no service"])
async def test_a_later_update_waits_for_a_service_of_an_earlier_one(api: Api, service_state: str) -> None:
    """Serving: the link is released at the commit and the endpoint handed over (Ready, env filled).
    Ended, or a job that is no service: the job is doomed with a reason naming it, never left waiting."""
    first = job(1, service=SVC, name="db") if service_state != "no service" else job(1, name="db")
    batch_id = await api.submit([first])
    await _set_service(api, batch_id, "Running" if service_state != "Success" else "Success",
                       serving=service_state == "serving")
    client = job(1, ready_parents=[{"job_id": 1, "absolute": True}], command="echo {service.db.url}")
    payload = {"update": {"token": "late", "n_jobs": 1}, "bunch": [client]}
    r = await api.client.post(f"/api/v1/batches/{batch_id}/update-fast", json=payload)
    assert r.status_code == 200, r.text
    rows = await job_rows(api.engine, batch_id)
    late = rows[2]
    if service_state == "serving":
        assert late.state == "Ready" and late.n_pending_parents == 0 and not late.parent_failed
        assert late.spec["env"]["CORRAL_SERVICE_DB_HOST"] == "192.0.2.7"
        assert late.spec["command"][-1] == "echo redis://192.0.2.7:6379"
    else:
        assert late.parent_failed, late
        words = "had already ended (Success)" if service_state == "Success" else "is not a service"
        assert words in late.status["error"], late.status
