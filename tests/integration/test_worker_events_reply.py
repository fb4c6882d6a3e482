"""New work carried in the reply to a worker's events post: a real `corral server` process and a real
worker (the Agent, in this test's event loop so its counters can be read) running a stream of jobs."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.acceptance.harness import RunningServer, job

from corral.runtimes.noop import NoopRuntime
from corral.worker.agent import Agent


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("events-reply") / "home"
    home.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update({
        "CORRAL_HOME": str(home), "CORRAL_PORT": "0", "CORRAL_URL_FILE": str(home / "server.url"),
        "CORRAL_LOCAL_WORKERS": "0",  # the test's own worker is the only one
    })
    running = RunningServer(home, env)
    running.start()
    yield running
    running.stop()


def _instance_token(server: RunningServer, cores: float) -> tuple[str, str]:
    name = f"hot-{uuid.uuid4().hex[:8]}"
    with server.client(server.admin_token) as c:
        r = c.post("/api/v1/instances/tokens", json={"name": name, "cores": cores, "memory": "2Gi"})
        assert r.status_code == 200, r.text
        return name, str(r.json()["token"])


async def _run_batch(server: RunningServer, agent: Agent, jobs: list[dict[str, Any]]) -> dict[str, Any]:
    worker = asyncio.create_task(agent.run())
    headers = {"Authorization": f"Bearer {server.token}"}
    try:
        async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=30) as c:
            spec = {"billing_project": "default", "token": uuid.uuid4().hex, "n_jobs": len(jobs)}
            r = await c.post("/api/v1/batches/create-fast", json={"batch": spec, "bunch": jobs})
            assert r.status_code == 200, r.text
            batch_id = r.json()["id"]
            for _ in range(3000):  # up to ~5 minutes on a loaded machine
                status: dict[str, Any] = (await c.get(f"/api/v1/batches/{batch_id}")).json()
                if status["complete"]:
                    return status
                assert not worker.done(), worker
                await asyncio.sleep(0.1)
            raise AssertionError(f"batch not complete: {status}\n{server.log_tail()}")
    finally:
        agent.draining.set()
        await asyncio.wait_for(worker, 60)


async def test_a_stream_of_short_jobs_gets_its_next_jobs_in_the_events_replies(
    server: RunningServer, tmp_path: Path
) -> None:
    name, token = _instance_token(server, cores=0.25)
    # One job at a time fits the instance: each next job is placed by the tick that commits the previous
    # one's completion, and that tick's events reply hands it over.
    agent = Agent(server.url, name, token, cores=0.25, memory_bytes=2 << 30, runtime="noop",
                  work_dir=tmp_path / "work")
    n = 12
    status = await _run_batch(server, agent, [job("true", i, cpu="0.25") for i in range(1, n + 1)])
    assert status["state"] == "success", status
    counts = agent.counts
    assert counts.assigned_by_poll + counts.assigned_by_events == n, counts  # each attempt ran once
    # The first job can only come by poll; the rest by the events replies (a poll that crossed an events
    # reply on the wire may win a job now and then, hence not all of them).
    assert counts.assigned_by_poll >= 1, counts
    assert counts.assigned_by_events >= n // 2, counts
    # A poll does not wake for work an events reply carries: far fewer poll round trips than jobs.
    assert counts.polls < counts.assigned_by_events, counts


async def test_a_worker_of_quick_short_jobs_gets_jobs_ahead_holds_them_and_runs_each_once(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(NoopRuntime, "quick_starts", True)  # the host runtime's setting, without root
    name, token = _instance_token(server, cores=0.5)
    agent = Agent(server.url, name, token, cores=0.5, memory_bytes=2 << 30, runtime="noop",
                  work_dir=tmp_path / "work")
    n = 40
    status = await _run_batch(server, agent, [job("true", i, cpu="0.25") for i in range(1, n + 1)])
    assert status["state"] == "success", status
    counts = agent.counts
    assert counts.assigned_by_poll + counts.assigned_by_events == n, counts  # each attempt ran once
    # Two jobs fit; once eight short runs were seen the driver handed more, held until cores freed.
    assert counts.held > 0 and counts.given_back == 0, counts
    assert agent.admission.used_mcpu == 0 and not agent.admission.held


async def test_an_older_worker_that_only_polls_still_gets_every_job(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name, token = _instance_token(server, cores=0.25)
    agent = Agent(server.url, name, token, cores=0.25, memory_bytes=2 << 30, runtime="noop",
                  work_dir=tmp_path / "work")

    async def events_only(batch: list[dict[str, Any]]) -> dict[str, Any]:  # the old wire: no `known`
        return {"ack": await agent.client.send_events(batch)}

    monkeypatch.setattr(agent, "_exchange", events_only)
    n = 6
    status = await _run_batch(server, agent, [job("true", i, cpu="0.25") for i in range(1, n + 1)])
    assert status["state"] == "success", status
    assert agent.counts.assigned_by_events == 0
    assert agent.counts.assigned_by_poll == n


@pytest.mark.skipif(
    os.environ.get("CI") != "true" and (os.geteuid() != 0 or shutil.which("bwrap") is None),
    reason="the process runtime needs root and bubblewrap (bwrap)",
)
async def test_sandboxed_jobs_scratch_is_deleted_in_the_background_and_nothing_is_left(
    server: RunningServer, tmp_path: Path
) -> None:
    name, token = _instance_token(server, cores=1)
    agent = Agent(server.url, name, token, cores=1, memory_bytes=2 << 30, runtime="process",
                  work_dir=tmp_path / "work")
    n = 8
    jobs = [job("echo out > /io/out.txt && test -s /io/out.txt", i, cpu="0.25") for i in range(1, n + 1)]
    status = await _run_batch(server, agent, jobs)
    assert status["state"] == "success", status
    assert agent.sweeper.removed == n  # every attempt's scratch went through the background removal
    assert list(agent.layout.jobs.iterdir()) == [] and list(agent.layout.trash.iterdir()) == []
