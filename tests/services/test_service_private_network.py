"""Service jobs on the default private (NAT) network: no `[jobs] host_network`, ports forwarded.

The worker publishes each service port through slirp4netns (`add_hostfwd`): the endpoint is the
instance's external address and the forwarded port; clients on their own private networks reach it
there, while the host's loopback services (the API, a loopback listener) stay out of their reach. Once
the service ends, the instance's port is closed again; once the workers end, so are their slirp4netns.
"""

from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import psutil
import pytest
from tests.services.conftest import need

import corral

pytestmark = pytest.mark.slow

REDIS = (  # clients arrive from the network (slirp4netns' gateway), not loopback: no protected mode
    "exec redis-server --port $CORRAL_PORT_MAIN --save '' --appendonly no --bind 0.0.0.0 --protected-mode no"
)
FORWARDERS: list[psutil.Process] = []  # slirp4netns processes seen forwarding a service's port


class LoopbackListener:
    """A TCP listener on the host's loopback that counts the connections it gets (none may come)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[corral.LocalBackend]:
    """The embedded default as shipped: jobs on private networks, no host network opt-in."""
    saved = {k: os.environ.pop(k) for k in [k for k in os.environ if k.startswith("CORRAL_")]}
    home = tmp_path_factory.mktemp("svc-nat-home")
    try:
        with corral.LocalBackend(home=Path(home), workers=2, cores=2) as local:
            yield local
    finally:
        os.environ.update(saved)
    # The workers are gone: so are the slirp4netns that forwarded their services' ports.
    deadline = time.monotonic() + 30
    while any(p.is_running() and p.status() != psutil.STATUS_ZOMBIE for p in FORWARDERS):
        assert time.monotonic() < deadline, f"slirp4netns left running: {FORWARDERS}"
        time.sleep(0.2)


def _listener_of(port: int) -> psutil.Process | None:
    for conn in psutil.net_connections(kind="tcp4"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr and conn.laddr.port == port and conn.pid:
            return psutil.Process(conn.pid)
    return None


def _wait_closed(port: int) -> None:
    deadline = time.monotonic() + 30
    while _listener_of(port) is not None:
        assert time.monotonic() < deadline, f"port {port} still listened on after the service ended"
        time.sleep(0.2)
    with pytest.raises(ConnectionRefusedError), socket.create_connection(("127.0.0.1", port), timeout=5):
        pass


def _no_process_with(marker: str) -> bool:
    return not any(marker in " ".join(p.info["cmdline"] or []) for p in psutil.process_iter(["cmdline"]))


def test_redis_service_and_client_on_private_networks(backend: corral.LocalBackend) -> None:
    need("redis-server", "redis-cli")
    loopback = LoopbackListener()
    api_port = urlsplit(backend.url).port
    try:
        b = corral.Batch(name="svc-nat-redis", backend=backend)
        svc = b.new_service("redis", ports=["main"], scheme="redis")
        svc.command(REDIS).ready(exec="redis-cli -p {port.main} ping", deadline=60, grace=5)
        client = b.new_job("client").depends_on(svc, when="ready")
        # The service through its endpoint; then the host's loopback services by every route a job
        # could try (its own 127.0.0.1 is its namespace's; slirp's gateway; the endpoint's address).
        probes = " ".join(
            f"{host}:{port}"
            for port in (loopback.port, api_port)
            for host in ("127.0.0.1", "198.51.100.2", "$CORRAL_SERVICE_REDIS_HOST")
        )
        client.command(
            'redis-cli -h "$CORRAL_SERVICE_REDIS_HOST" -p "$CORRAL_SERVICE_REDIS_PORT" set k v && '
            "redis-cli -u {service.redis.url}/0 get k; echo host=$CORRAL_SERVICE_REDIS_HOST; "
            f"for target in {probes}; do "
            '  if timeout 5 bash -c "echo > /dev/tcp/${target%:*}/${target#*:}" 2>/dev/null; '
            '  then echo "reached $target"; else echo "refused $target"; fi; '
            "done; "
            # Held until the test has looked at the forward from the host (which also proves it works).
            'redis-cli -h "$CORRAL_SERVICE_REDIS_HOST" -p "$CORRAL_SERVICE_REDIS_PORT" blpop go 0'
        )
        handle = b.submit()
        deadline = time.monotonic() + 120
        while not (handle.job(1).get("serving") and handle.job(2)["state"] == "Running"):
            alive = handle.job(1)["state"] in ("Pending", "Ready", "Running")
            assert alive and time.monotonic() < deadline, handle.jobs()
            time.sleep(0.1)
        endpoint = handle.job(1)["endpoint"]
        forwarder = _listener_of(endpoint["ports"]["main"])
        assert forwarder is not None and forwarder.name() == "slirp4netns", forwarder  # not redis itself
        FORWARDERS.append(forwarder)
        pushed = subprocess.run(
            ["redis-cli", "-h", endpoint["host"], "-p", str(endpoint["ports"]["main"]), "rpush", "go", "1"],
            capture_output=True, text=True, timeout=30,
        )
        assert pushed.stdout.strip() == "(integer) 1" or pushed.stdout.strip() == "1", pushed
        handle.wait(progress=False, timeout=120)
        jobs = {j["job_id"]: j for j in handle.jobs()}
        log = handle.log(2, "main")
        assert jobs[1]["state"] == "Success" and jobs[2]["state"] == "Success", (jobs, log)
        status = handle.job(1)["status"]["service"]
        port, host = status["ports"]["main"], status["host"]
        assert status["network"] == "nat" and status["ready"] is True
        assert not host.startswith("127."), host  # reachable from other namespaces and instances
        assert f"host={host}" in log and "v" in log.split()
        assert "reached" not in log, log
        assert log.count("refused ") == 6, log
        assert loopback.connections == 0
        assert "User requested shutdown" in handle.log(1, "main")  # SIGTERM reached redis in its namespace
        _wait_closed(port)  # the forward closed with the service
        assert _no_process_with(f"--port {port}")
    finally:
        loopback.close()


def test_tcp_probe_is_not_fooled_by_the_forward(backend: corral.LocalBackend) -> None:
    """slirp4netns accepts on the instance's port at once: the probe must look where it leads."""
    b = corral.Batch(name="svc-nat-never", backend=backend)
    svc = b.new_service("sleepy", ports=["main"])
    never = f"sleep 600.{uuid.uuid4().int % 10**6:06d}"
    svc.command(f"exec {never}  # never listens on $CORRAL_PORT_MAIN").ready(tcp="main", deadline=3)
    b.new_job("client").depends_on(svc, when="ready").command("echo never")
    handle = b.run(progress=False, timeout=120, check=False)  # it is meant to fail
    jobs = {j["job_id"]: j for j in handle.jobs()}
    assert jobs[1]["state"] == "Failed" and jobs[2]["state"] == "Cancelled", jobs
    error = handle.job(1)["status"]["error"]
    assert "not ready after 3s" in error and "ConnectionRefused" in error, error
    _wait_closed(handle.job(1)["status"]["service"]["ports"]["main"])
    deadline = time.monotonic() + 30
    while not _no_process_with(never):
        assert time.monotonic() < deadline, f"{never} still running"
        time.sleep(0.2)


def test_http_service_on_a_private_network_is_probed_and_stopped(backend: corral.LocalBackend) -> None:
    b = corral.Batch(name="svc-nat-http", backend=backend)
    svc = b.new_service("web", ports=["main"], scheme="http")
    svc.command(
        'exec python3 -c "import http.server, os, signal, sys\n'
        "def bye(*_):\n    print('got SIGTERM', flush=True); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "http.server.HTTPServer(('0.0.0.0', int(os.environ['CORRAL_PORT_MAIN'])), "
        'http.server.SimpleHTTPRequestHandler).serve_forever()"'
    ).ready(http="/", grace=60)
    client = b.new_job("client").depends_on(svc, when="ready", placement="other")
    client.command(
        "python3 -c \"import urllib.request, os; "
        "print(urllib.request.urlopen(os.environ['CORRAL_SERVICE_WEB_URL']).status)\""
    )
    handle = b.run(progress=False, timeout=120)
    assert handle.status()["state"] == "success", handle.jobs()
    assert "200" in handle.log(2, "main").split()
    assert "got SIGTERM" in handle.log(1, "main")
    service = handle.job(1)["status"]["service"]
    assert service["network"] == "nat" and service["probes"][0]["ok"] is True
    _wait_closed(service["ports"]["main"])


def test_a_job_of_a_later_update_waits_for_a_service_already_serving(backend: corral.LocalBackend) -> None:
    """The service and a first client go in one update; a second client joins in a later update, while
    the service serves (the first client waits for it), gets the endpoint and runs; then both end and
    the service is stopped."""
    need("redis-server", "redis-cli")
    b = corral.Batch(name="svc-nat-later", backend=backend)
    svc = b.new_service("redis", ports=["main"], scheme="redis")
    svc.command(REDIS).ready(exec="redis-cli -p {port.main} ping", deadline=60, grace=5)
    first = b.new_job("first").depends_on(svc, when="ready")
    first.command('redis-cli -h "$CORRAL_SERVICE_REDIS_HOST" -p "$CORRAL_SERVICE_REDIS_PORT" blpop go 0')
    handle = b.submit()
    deadline = time.monotonic() + 120
    while handle.job(2)["state"] != "Running":
        assert time.monotonic() < deadline and handle.job(1)["state"] in ("Pending", "Ready", "Running"), (
            handle.jobs()
        )
        time.sleep(0.1)
    later = b.new_job("later").depends_on(svc, when="ready")
    later.command('redis-cli -u "$CORRAL_SERVICE_REDIS_URL" rpush go 1; echo "url={service.redis.url}"')
    handle = b.submit()
    handle.wait(progress=False, timeout=120)
    jobs = {j["job_id"]: j for j in handle.jobs()}
    assert {j["state"] for j in jobs.values()} == {"Success"}, jobs
    log = handle.log(3, "main")
    assert "url=redis://" in log and "1" in log.split(), log
    _wait_closed(handle.job(1)["status"]["service"]["ports"]["main"])
    # Once the service has been stopped, a job that waits for it would wait for ever: it is cancelled,
    # and the reason names the service.
    b.new_job("too-late").depends_on(svc, when="ready").command("echo never")
    handle = b.submit()
    handle.wait(progress=False, timeout=120)
    late = handle.job(4)
    assert late["state"] == "Cancelled", late
    assert "service 'redis' (job 1) had already ended" in str(late["status"]), late["status"]
