"""Whole-system fixtures: a real `corral server` process with real local worker processes."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.acceptance.harness import RunningServer
from tests.acceptance.sshbed import SshTestbed, start_testbed, stop_testbed


@pytest.fixture
def start_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Any]:
    servers: list[RunningServer] = []

    def start(
        *,
        db_url: str | None = None,
        local_workers: int = 1,
        cores: float = 2,
        heartbeat_timeout: float = 4,
        runtime: str = "process",
        **settings: Any,
    ) -> RunningServer:
        home = tmp_path / f"home{len(servers)}"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
        env.update(
            {
                "CORRAL_HOME": str(home),
                "CORRAL_PORT": "0",
                "CORRAL_URL_FILE": str(home / "server.url"),
                "CORRAL_LOCAL_WORKERS": str(local_workers),
                "CORRAL_LOCAL_WORKER_CORES": str(cores),
                "CORRAL_LOCAL_WORKER_MEMORY": "4Gi",
                "CORRAL_HEARTBEAT_TIMEOUT": str(heartbeat_timeout),
                "CORRAL_HEARTBEAT_INTERVAL": "0.5",
                "CORRAL_LOCAL_WORKER_RUNTIME": runtime,
            }
        )
        if db_url:
            env["CORRAL_DATABASE_URL"] = db_url
        env.update({f"CORRAL_{k.upper()}": str(v) for k, v in settings.items()})
        server = RunningServer(home, env)
        servers.append(server)
        server.start()
        return server

    request.node.stash[SERVERS] = servers  # checked when the scenario ends (pytest_runtest_call below)
    yield start
    for server in servers:
        server.stop()


SERVERS = pytest.StashKey[list[RunningServer]]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    """After every scenario, while its servers and stores still exist: the invariants must hold."""
    result = yield
    found = [v for server in item.stash.get(SERVERS, []) if server.running for v in check_invariants(server)]
    assert not found, "invariants broken after the scenario:\n" + "\n".join(found)
    return result


def check_invariants(server: RunningServer) -> list[str]:
    """`corral admin check` through the API: the store's and the driver's invariants, after a scenario."""
    with server.client(server.admin_token) as client:
        r = client.get("/api/v1/admin/check", timeout=60)
    assert r.status_code == 200, r.text
    return [f"{server.home}: {v['check']}: {v['detail']}" for v in r.json()["violations"]]


@pytest.fixture(scope="session")
def ssh_testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshTestbed]:
    """sshd on loopback and in two network-namespace hosts behind a jump host (scripts/sshd.sh)."""
    testbed = start_testbed(tmp_path_factory.mktemp("sshd"), tmp_path_factory.mktemp("ssh-work"))
    yield testbed
    stop_testbed(testbed)
