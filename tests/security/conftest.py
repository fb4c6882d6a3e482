"""A real multi-user `corral server` with real local workers, and an ordinary user who attacks it.

Module-scoped: one server per runtime serves every attack in a file. Each test checks the host
afterwards, not only the job's exit code.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from tests.acceptance.harness import RunningServer, job

pytestmark = pytest.mark.skipif(
    os.environ.get("CI") != "true" and (os.geteuid() != 0 or shutil.which("bwrap") is None),
    reason="needs root and bubblewrap (bwrap)",
)


@dataclass
class Attacker:
    """An ordinary user's account on a running server."""

    server: RunningServer
    name: str
    token: str

    def run(self, command: str, timeout: float = 120, **extra: Any) -> tuple[dict[str, Any], str]:
        """Run one bash job as this user; returns (job status, main log)."""
        batch_id = self.server.submit([job(command, 1, **extra)], token=self.token)
        self.server.wait(batch_id, timeout)
        with self.server.client(self.token) as c:
            status = c.get(f"/api/v1/batches/{batch_id}/jobs/1").json()
            log = c.get(f"/api/v1/batches/{batch_id}/jobs/1/log/main")
        return status, log.text if log.status_code == 200 else ""


def start_server(home: Path, **settings: str) -> RunningServer:
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update({
        "CORRAL_HOME": str(home), "CORRAL_PORT": "0", "CORRAL_URL_FILE": str(home / "server.url"),
        "CORRAL_LOCAL_WORKERS": "1", "CORRAL_LOCAL_WORKER_CORES": "2", "CORRAL_LOCAL_WORKER_MEMORY": "4Gi",
        "CORRAL_HEARTBEAT_INTERVAL": "0.5",
    })
    env.update({f"CORRAL_{k.upper()}": v for k, v in settings.items()})
    server = RunningServer(home, env)
    server.start()
    return server


def new_user(server: RunningServer, name: str | None = None, project: str = "default") -> Attacker:
    name = name or f"user-{uuid.uuid4().hex[:6]}"
    with server.client(server.admin_token) as c:
        r = c.post("/api/v1/users", json={"name": name})
        assert r.status_code == 200, r.text
        token = r.json()["token"]
        r = c.post(f"/api/v1/billing-projects/{project}/users/{name}")
        assert r.status_code == 200, r.text
    return Attacker(server, name, token)


@pytest.fixture(scope="module", params=["process", "oci"])
def server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("security") / "home"
    running = start_server(home, local_worker_runtime=request.param)
    yield running
    running.stop()


@pytest.fixture(scope="module")
def attacker(server: RunningServer) -> Attacker:
    return new_user(server)
