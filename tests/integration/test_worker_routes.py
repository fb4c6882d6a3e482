"""The worker protocol's routes against a real Driver and store, in-process: logs carried in events."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from test_api_support import job, job_rows

from corral.api.app import create_app
from corral.api.bootstrap import bootstrap
from corral.config import Settings
from corral.driver import lookahead
from corral.driver.driver import Driver
from corral.driver.worker_api import worker_router
from corral.store import instances as instance_store
from corral.store.tables import attempt_charges, attempts

WORKER_TOKEN = "worker-token-for-tests"


@dataclass
class Service:
    user: httpx.AsyncClient
    worker: httpx.AsyncClient
    settings: Settings
    driver: Driver


@contextlib.asynccontextmanager
async def _serving(engine: AsyncEngine, tmp_path: Path, *, queues: bool) -> AsyncIterator[Service]:
    """A real Driver and store behind the API; the test is the worker (w1: 4 cores), activated saying
    whether it holds assignments beyond its free cores."""
    settings = Settings(home=tmp_path / "home", admin_user="admin", default_user="alice", pool="default")
    tokens = await bootstrap(engine, settings)
    driver = Driver(engine, settings)
    await driver.start()
    async with engine.begin() as conn:
        await instance_store.ensure_collection(conn, "default", kind="pool", provider="test", config={})
    await driver.register_instance(
        name="w1", pool="default", token=WORKER_TOKEN, cores_mcpu=4000, memory_bytes=8 << 30, metadata={}
    )
    app = create_app(settings, engine, driver, extra_routers=[worker_router(driver, settings.log_dir)])
    transport = httpx.ASGITransport(app=app)
    base = "http://corral.test"
    user_auth = {"Authorization": f"Bearer {tokens['token']}"}
    worker_auth = {"Authorization": f"Bearer {WORKER_TOKEN}"}
    async with (
        httpx.AsyncClient(transport=transport, base_url=base, headers=user_auth, timeout=30) as user,
        httpx.AsyncClient(transport=transport, base_url=base, headers=worker_auth, timeout=30) as worker,
    ):
        body = {"cores_mcpu": 4000, "memory_bytes": 8 << 30, "queues": queues}
        r = await worker.post("/api/v1/worker/activate", json=body)
        assert r.status_code == 200, r.text
        try:
            yield Service(user, worker, settings, driver)
        finally:
            driver.close_polls()
            await driver.stop()


@pytest.fixture
async def service(engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[Service]:
    async with _serving(engine, tmp_path, queues=False) as served:
        yield served


@pytest.fixture
async def queuing_service(engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[Service]:
    async with _serving(engine, tmp_path, queues=True) as served:
        yield served


async def _assigned(service: Service) -> dict[str, Any]:
    r = await service.user.post(
        "/api/v1/batches/create-fast",
        json={"batch": {"billing_project": "default", "token": "t1", "n_jobs": 1}, "bunch": [job(1)]},
    )
    assert r.status_code == 200, r.text
    r = await service.worker.post("/api/v1/worker/poll", json={"known": [], "wait": 10})
    assert r.status_code == 200, r.text
    (assignment,) = r.json()["assign"]
    return dict(assignment)


def _completed(key: str, logs: dict[str, str]) -> dict[str, Any]:
    return {
        "type": "completed",
        "key": key,
        "time": 2.0,
        "state": "succeeded",
        "exit_code": 0,
        "error": None,
        "out_of_memory": False,
        "timed_out": False,
        "container_statuses": {"input": None, "main": None, "output": None},
        "resource_usage": {"max_memory_bytes": 0, "cpu_seconds": 0.0},
        "logs": logs,
    }


async def test_logs_carried_in_the_completed_event_are_served_per_step(service: Service) -> None:
    a = await _assigned(service)
    main_log = b"hello from main\n"
    events = [
        {"type": "started", "key": a["key"], "time": 1.0},
        _completed(a["key"], {"main": base64.b64encode(main_log).decode()}),
    ]
    r = await service.worker.post("/api/v1/worker/events", json={"events": events})
    assert r.status_code == 200, r.text
    assert a["key"] in r.json()["ack"]
    r = await service.user.get(f"/api/v1/batches/{a['batch_id']}/jobs/{a['job_id']}/log")
    assert r.json() == {"main": main_log.decode()}
    batch_dir = service.settings.log_dir / str(a["batch_id"])  # one file, no directory per job or attempt
    assert [p.name for p in batch_dir.iterdir()] == [f"{a['job_id']}.{a['attempt_id']}.main.log"]
    status = (await service.user.get(f"/api/v1/batches/{a['batch_id']}/jobs/{a['job_id']}")).json()
    assert status["state"] == "Success"
    assert "logs" not in (status.get("status") or {})  # logs go to files, not into the job's status row


async def test_a_log_that_is_not_base64_is_refused_and_changes_nothing(service: Service) -> None:
    a = await _assigned(service)
    r = await service.worker.post(
        "/api/v1/worker/events", json={"events": [_completed(a["key"], {"main": "not base64!"})]}
    )
    assert r.status_code == 400 and "logs.main" in r.text
    r = await service.worker.post(
        "/api/v1/worker/events", json={"events": [_completed(a["key"], {"stdout": ""})]}
    )
    assert r.status_code == 400 and "input, main, output" in r.text
    status = (await service.user.get(f"/api/v1/batches/{a['batch_id']}/jobs/{a['job_id']}")).json()
    assert status["state"] == "Running"
    r = await service.user.get(f"/api/v1/batches/{a['batch_id']}/jobs/{a['job_id']}/log")
    assert r.json() == {}


async def test_usage_samples_are_stored_once_and_malformed_ones_refused(service: Service) -> None:
    a = await _assigned(service)
    started = {"type": "started", "key": a["key"], "time": 1.0}
    r = await service.worker.post("/api/v1/worker/events", json={"events": [started]})
    assert r.status_code == 200, r.text
    t0 = time.time()  # after the assignment: samples from here on are inside the attempt's window
    await asyncio.sleep(0.3)
    now = time.time()
    samples = [[t0 + 0.1, 500, 1 << 20], [t0 + 0.2, 250, 2 << 20]]
    usage = {"type": "usage", "key": a["key"], "time": now, "samples": samples}
    for _ in range(2):  # a resent report changes nothing
        r = await service.worker.post("/api/v1/worker/events", json={"events": [usage]})
        assert r.status_code == 200 and a["key"] in r.json()["ack"]
    for bad in ([[1.0, -5, 1]], [[1.0, 5]], [["soon", 1, 1]], [[float("1e400"), 1, 1]]):
        body = {"events": [{**usage, "samples": bad}]}
        r = await service.worker.post(
            "/api/v1/worker/events", content=httpx_json(body), headers={"Content-Type": "application/json"}
        )
        assert r.status_code == 400, (bad, r.text)
    future = {**usage, "samples": [[now + 1e9, 100, 3 << 20]]}
    r = await service.worker.post("/api/v1/worker/events", json={"events": [future]})
    assert r.status_code == 200, r.text
    u = (await service.user.get(f"/ui/batches/{a['batch_id']}/jobs/{a['job_id']}/usage")).json()
    assert u["cpu_cores"] == [0.5, 0.25, 0.1] and u["memory_bytes"] == [1 << 20, 2 << 20, 3 << 20]
    assert u["time"][:2] == [t0 + 0.1, t0 + 0.2]
    assert u["time"][2] < now + 60  # a time in the future is clamped to the driver's clock
    status = (await service.user.get(f"/api/v1/batches/{a['batch_id']}/jobs/{a['job_id']}")).json()
    assert status["state"] == "Running"


def httpx_json(body: dict[str, Any]) -> bytes:
    import json

    return json.dumps(body).encode()


async def test_a_host_runtime_worker_is_refused_unless_the_site_opts_in(
    service: Service, engine: AsyncEngine
) -> None:
    body = {"cores_mcpu": 4000, "memory_bytes": 8 << 30, "runtimes": ["host"]}
    r = await service.worker.post("/api/v1/worker/activate", json=body)
    assert r.status_code == 403, r.text
    assert "allow_host_runtime" in r.text
    service.settings.jobs.allow_host_runtime = True  # the site's opt-in (the driver reads the same settings)
    r = await service.worker.post("/api/v1/worker/activate", json=body)
    assert r.status_code == 200, r.text
    async with engine.connect() as conn:
        (meta,) = [i.metadata for i in await instance_store.live_instances(conn) if i.name == "w1"]
    assert meta["runtime"] == "host" and "unsandboxed" in meta["isolation"]


async def test_the_events_reply_hands_over_the_jobs_a_completion_freed_and_a_waiting_poll_stays_quiet(
    service: Service,
) -> None:
    r = await service.user.post(
        "/api/v1/batches/create-fast",
        json={"batch": {"billing_project": "default", "token": "chain", "n_jobs": 2},
              "bunch": [job(1), job(2, parents=[1])]},
    )
    assert r.status_code == 200, r.text
    r = await service.worker.post("/api/v1/worker/poll", json={"known": [], "wait": 10})
    (first,) = r.json()["assign"]
    # A poll is waiting (it knows the first job) while the first job's completion goes in.
    waiting = asyncio.create_task(
        service.worker.post("/api/v1/worker/poll", json={"known": [first["key"]], "wait": 1.0})
    )
    for _ in range(1000):  # in-process, memory only: these loop turns take it into its wait, any load
        await asyncio.sleep(0)
    done = {**_completed(first["key"], {}), "logs": None}
    r = await service.worker.post("/api/v1/worker/events", json={"events": [done], "known": [first["key"]]})
    assert r.status_code == 200, r.text
    reply = r.json()
    assert first["key"] in reply["ack"]
    (second,) = reply["assign"]  # the child, placed by the tick that committed its parent's completion
    assert second["job_id"] == 2 and second["batch_id"] == first["batch_id"]
    assert reply["cancel"] == [] and reply["stop"] == [] and reply["shutdown"] is False
    polled = (await waiting).json()
    assert polled["assign"] == []  # the waiting poll did not wake to send it a second time
    # A worker of the old wire (no `known`) gets acknowledgements only, and its polls carry its work.
    r = await service.worker.post("/api/v1/worker/events", json={"events": [{**done, "key": second["key"]}]})
    assert r.status_code == 200 and set(r.json()) == {"ack"}, r.text


async def _submit(service: Service, token: str, n: int, **extra: Any) -> int:
    r = await service.user.post(
        "/api/v1/batches/create-fast",
        json={"batch": {"billing_project": "default", "token": token, "n_jobs": n},
              "bunch": [job(i, **extra) for i in range(1, n + 1)]},
    )
    assert r.status_code == 200, r.text
    return int(r.json()["id"])


async def _poll(service: Service, known: list[str]) -> list[dict[str, Any]]:
    r = await service.worker.post("/api/v1/worker/poll", json={"known": known, "wait": 10})
    assert r.status_code == 200, r.text
    return list(r.json()["assign"])


async def _events(service: Service, events: list[dict[str, Any]], known: list[str]) -> dict[str, Any]:
    r = await service.worker.post("/api/v1/worker/events", json={"events": events, "known": known})
    assert r.status_code == 200, r.text
    return dict(r.json())


async def test_a_queuing_worker_of_short_jobs_gets_jobs_ahead_and_one_given_back_is_rerun_uncounted(
    queuing_service: Service, engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = queuing_service
    # How deep the driver looks ahead follows the runs' length, here the test's pace (tests/unit/
    # test_lookahead.py covers it): one cores' worth, whatever that pace.
    monkeypatch.setattr(lookahead, "MAX_DEPTH", 1)
    await _submit(service, "warm", 8)  # 8 jobs of 0.5 cpu fill the 4 cores; they end at once
    warm = await _poll(service, [])
    assert len(warm) == 8
    await _events(service, [{**_completed(a["key"], {}), "logs": None} for a in warm], [])

    batch_id = await _submit(service, "main", 30, n_max_attempts=1)
    handed = await _poll(service, [])
    # Eight short runs seen: the driver hands this worker its cores' worth beyond them (8 x 0.5 + 8 x 0.5).
    assert len(handed) == 16 and sum(a["cores_mcpu"] for a in handed) == 8000
    back = handed[-1]
    others = [a["key"] for a in handed[:-1]]
    returned = {"type": "returned", "key": back["key"], "time": 2.0, "waited": 2.25}
    reply = await _events(service, [returned], others)
    assert back["key"] in reply["ack"]
    assert reply["assign"] == []  # no lookahead after a give-back, and the cores are all taken

    async with engine.connect() as conn:
        attempt = (await conn.execute(select(attempts).where(
            attempts.c.batch_id == batch_id, attempts.c.job_id == back["job_id"]))).one()
        charged = {(r.job_id, r.attempt_id) for r in await conn.execute(
            select(attempt_charges).where(attempt_charges.c.batch_id == batch_id))}
    assert (attempt.end_reason, attempt.time_started) == ("returned", None)
    assert "2.2s" in attempt.status["error"] or "2.3s" in attempt.status["error"]
    rows = await job_rows(engine, batch_id)
    assert rows[back["job_id"]].state == "Ready"  # n_max_attempts=1, yet not in Error: it did not count
    assert (back["job_id"], 1) not in charged

    # The running jobs end; the driver hands out no more than the freed cores now (paused), and the
    # given-back job comes again as attempt 2, which runs to success.
    ends = [{**_completed(k, {}), "logs": None} for k in others]
    second = (await _events(service, ends, []))["assign"]
    assert 0 < len(second) <= 8
    rest = list(second)
    while not any(a["job_id"] == back["job_id"] for a in rest):
        ends = [{**_completed(a["key"], {}), "logs": None} for a in rest]
        rest = (await _events(service, ends, []))["assign"]
        assert rest, "the given-back job was never handed out again"
    again = next(a for a in rest if a["job_id"] == back["job_id"])
    assert again["attempt_id"] == 2
    await _events(service, [{**_completed(a["key"], {}), "logs": None} for a in rest], [])
    rows = await job_rows(engine, batch_id)
    assert (rows[back["job_id"]].state, rows[back["job_id"]].n_attempts) == ("Success", 2)
    async with engine.connect() as conn:
        charged = {(r.job_id, r.attempt_id) for r in await conn.execute(
            select(attempt_charges).where(attempt_charges.c.batch_id == batch_id))}
    assert (back["job_id"], 2) in charged and (back["job_id"], 1) not in charged


async def test_two_posts_on_the_wire_get_each_new_job_once_and_a_later_post_gets_what_it_misses(
    service: Service,
) -> None:
    await _submit(service, "full", 8)  # 8 x 0.5 cpu: the worker's 4 cores are taken
    running = await _poll(service, [])
    await _submit(service, "next", 4)
    keys = [a["key"] for a in running]
    first, second = ({**_completed(k, {}), "logs": None} for k in keys[:2])
    # Both posts are on the wire before either is answered, as a worker with two posts in flight sends.
    one, two = await asyncio.gather(_events(service, [first], keys), _events(service, [second], keys))
    handed = [a["key"] for a in one["assign"] + two["assign"]]
    assert len(handed) == 2 and len(set(handed)) == 2, (one, two)  # the two freed slots, each job once
    # Had a reply been lost, the worker's next post (not knowing those jobs) gets them again.
    again = await _events(service, [], keys[2:])
    assert sorted(a["key"] for a in again["assign"]) == sorted(handed)


async def test_a_worker_that_does_not_queue_never_gets_more_than_its_cores(service: Service) -> None:
    await _submit(service, "warm", 8)
    warm = await _poll(service, [])
    await _events(service, [{**_completed(a["key"], {}), "logs": None} for a in warm], [])
    await _submit(service, "main", 30)
    assert sum(a["cores_mcpu"] for a in await _poll(service, [])) == 4000


async def test_a_lost_attempt_after_a_given_back_one_counts_only_the_attempts_that_ran(
    queuing_service: Service, engine: AsyncEngine
) -> None:
    service = queuing_service
    await _submit(service, "warm", 8)
    warm = await _poll(service, [])
    await _events(service, [{**_completed(a["key"], {}), "logs": None} for a in warm], [])
    batch_id = await _submit(service, "main", 24, n_max_attempts=2)
    handed = await _poll(service, [])
    back = handed[-1]
    await _events(service, [{"type": "returned", "key": back["key"], "time": 2.0, "waited": 2.0}],
                  [a["key"] for a in handed[:-1]])
    rest = list(handed[:-1])
    while not any(a["job_id"] == back["job_id"] for a in rest):  # until attempt 2 of that job is handed over
        ends = [{**_completed(a["key"], {}), "logs": None} for a in rest]
        rest = (await _events(service, ends, []))["assign"]
        assert rest, "the given-back job was never handed out again"
    r = await service.worker.post("/api/v1/worker/deactivate")  # the instance goes: attempt 2 is lost
    assert r.status_code == 200, r.text
    for _ in range(200):
        row = (await job_rows(engine, batch_id))[back["job_id"]]
        if row.state != "Running":
            break
        await asyncio.sleep(0.05)
    # Two attempts made, one given back: one counted of n_max_attempts=2, so it waits to run again.
    assert (row.state, row.n_attempts) == ("Ready", 2)


async def test_a_start_heard_with_its_end_is_stored_with_it_and_one_heard_before_is_kept(
    service: Service, engine: AsyncEngine
) -> None:
    batch_id = await _submit(service, "starts", 3)
    assigned = {a["job_id"]: a for a in await _poll(service, [])}
    assert sorted(assigned) == [1, 2, 3]
    t0 = time.time()
    keys = {j: a["key"] for j, a in assigned.items()}

    def started(j: int, at: float) -> dict[str, Any]:
        return {"type": "started", "key": keys[j], "time": at}

    def ended(j: int) -> dict[str, Any]:
        return {**_completed(keys[j], {}), "time": time.time(), "logs": None}

    # Job 1 starts and ends in one post (one tick: its start goes with its end); job 2 starts alone, job 3
    # too, and job 3 ends in a later post that says nothing of its start.
    await _events(service, [started(1, t0 + 0.01), ended(1), started(2, t0 + 0.02), started(3, t0 + 0.03)],
                  list(keys.values()))

    async def start_times() -> dict[int, tuple[str, float | None]]:
        async with engine.connect() as conn:
            rows = await conn.execute(select(attempts).where(attempts.c.batch_id == batch_id))
            return {r.job_id: (r.state, r.time_started) for r in rows}

    stored = await start_times()
    assert stored[1][0] == "ended" and stored[1][1] == pytest.approx(t0 + 0.01)
    assert stored[2] == ("running", pytest.approx(t0 + 0.02))
    assert stored[3] == ("running", pytest.approx(t0 + 0.03))
    await _events(service, [ended(3)], [keys[2], keys[3]])
    stored = await start_times()
    assert stored[3] == ("ended", pytest.approx(t0 + 0.03))  # its end keeps the start heard before
    status = (await service.user.get(f"/api/v1/batches/{batch_id}/jobs/1")).json()["status"]
    assert status["start_time"] == pytest.approx(t0 + 0.01)
