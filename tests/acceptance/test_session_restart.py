"""A benchmark session survives its server being SIGKILLed mid-run: after a restart the session completes
(or ends cleanly), its results are read from the batch, and no service process is left behind."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from tests.acceptance.harness import RunningServer
from tests.services.conftest import HOST_NETWORK, need

from corral.client.backends import ServiceBackend
from corral.sessions import runner
from corral.sessions.recipe import parse_recipe

pytestmark = pytest.mark.slow


def _redis_ports(session_home: Path) -> set[int]:
    ports = set()
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if cmd and "redis-server" in cmd[0] and "--port" in cmd:
            ports.add(int(cmd[cmd.index("--port") + 1]))
    return ports


def test_session_completes_after_the_server_is_killed(start_server: Any, tmp_path: Path) -> None:
    need("redis-server", "redis-benchmark", "redis-cli")
    server: RunningServer = start_server(cores=2, jobs=HOST_NETWORK)
    recipe = parse_recipe({
        "name": "restart",
        "service": {"type": "redis", "resources": {"cpu": 0.5}, "ready": {"deadline": 60}},
        "clients": [{"type": "redis-benchmark", "resources": {"cpu": 0.5},
                     "stop": {"min_duration": 3, "min_requests": 1000}}],
        "matrix": {"client": {"concurrency": [1, 2]}},
    })
    before = _redis_ports(tmp_path)
    backend = ServiceBackend(server.url, server.token)
    session = runner.submit(recipe, backend)
    client = backend.client()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = {j.name: j for j in client.iter_jobs(session["batch_id"])}
        if any(j.state == "Running" and not name.startswith("svc-") for name, j in jobs.items() if name):
            break
        time.sleep(0.2)
    server.kill(signal.SIGKILL)
    time.sleep(1.0)  # the workers keep running the service and the client, and keep retrying reports
    server.start()
    backend = ServiceBackend(server.url, server.token)
    client = backend.client()
    runner.wait(client, session, timeout=180)
    outcome = runner.finalize(client, session["id"], tmp_path / "report")
    status = client.get_batch(session["batch_id"])
    assert status.complete and outcome.state in ("success", "failure"), outcome
    jobs = [j.model_dump() for j in client.iter_jobs(session["batch_id"])]
    assert outcome.state == "success", (outcome, jobs)
    rows = runner.get_results(client, session["id"], metric="throughput")
    assert {r["cell"] for r in rows} == {"c1", "c2"} and all(r["value"] > 0 for r in rows)
    deadline = time.monotonic() + 20
    while _redis_ports(tmp_path) - before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not _redis_ports(tmp_path) - before
