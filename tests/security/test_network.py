"""Networks as named: a job reaches none of the host's loopback services (the API, PostgreSQL, a listener)."""

from __future__ import annotations

import socket
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlparse

import pytest
from tests.acceptance.harness import RunningServer
from tests.security.conftest import Attacker

ROOT = Path(__file__).resolve().parents[2]


class Listener:
    """A TCP listener on the host's loopback that records every connection it receives."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    found = Listener()
    yield found
    found.close()


def _postgres_port() -> int:
    out = subprocess.run([str(ROOT / "scripts" / "postgres.sh"), "start"], check=True, capture_output=True,
                         text=True).stdout.strip()
    return int(urlparse(out).port or 5432)


def _probe(ports: dict[str, int]) -> str:
    """bash: try each port on every address that could lead to the host's loopback."""
    hosts = ["127.0.0.1", "localhost", "198.51.100.2", "10.0.2.2"]
    tries = [
        f"timeout 3 bash -c 'echo > /dev/tcp/{h}/{p}' 2>/dev/null && echo REACHED-{name}-{h}"
        for name, p in ports.items() for h in hosts
    ]
    return "; ".join(tries) + "; true"


@pytest.mark.parametrize("network", [None, "private", "public", "none"])
def test_host_loopback_services_are_unreachable(
    server: RunningServer, attacker: Attacker, listener: Listener, network: str | None
) -> None:
    ports = {"listener": listener.port, "api": int(urlparse(server.url).port or 80), "pg": _postgres_port()}
    extra = {"network": network} if network else {}
    status, log = attacker.run(_probe(ports), **extra)
    assert status["state"] == "Success", status
    assert "REACHED" not in log, log
    assert listener.connections == 0


def test_private_network_has_its_own_interfaces(attacker: Attacker) -> None:
    status, log = attacker.run("tail -n +3 /proc/net/dev | cut -d: -f1", network="private")
    assert status["state"] == "Success", status
    interfaces = log.split()
    assert "tap0" in interfaces and "eth0" not in interfaces, interfaces


def test_none_network_has_only_loopback(attacker: Attacker) -> None:
    status, log = attacker.run("tail -n +3 /proc/net/dev | cut -d: -f1", network="none")
    assert status["state"] == "Success", status
    assert log.split() == ["lo"]


def test_host_network_is_a_site_opt_in_and_the_probe_can_see_it(
    tmp_path: Path, listener: Listener
) -> None:
    """The same probe reaches the listener once the site opts into the host network for `public` jobs."""
    from tests.security.conftest import new_user, start_server

    config = tmp_path / "corral.toml"
    config.write_text("[jobs]\nhost_network = true\n")
    opted_in = start_server(tmp_path / "home", config=str(config))
    try:
        user = new_user(opted_in)
        status, log = user.run(_probe({"listener": listener.port}), network="public")
        assert status["state"] == "Success", status
        assert "REACHED-listener-127.0.0.1" in log
        assert listener.connections >= 1
        status, log = user.run(_probe({"listener": listener.port}), network="private")
        assert "REACHED" not in log
    finally:
        opted_in.stop()
