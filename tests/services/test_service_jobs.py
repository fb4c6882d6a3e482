"""Service jobs with real programs: ports, probes, endpoint hand-off, when="ready", lifetime."""

from __future__ import annotations

import time
import uuid

import psutil
import pytest
from tests.services.conftest import need

import corral

pytestmark = pytest.mark.slow

# Durations no other process on this shared machine uses: the tests look for them in every process.
UNIQUE = f"{uuid.uuid4().int % 10**6:06d}"
NEVER, KILLED, CANCELLED = (f"sleep {n}.{UNIQUE}" for n in (600, 120, 300))
REDIS = "exec redis-server --port $CORRAL_PORT_MAIN --save '' --appendonly no --bind 0.0.0.0"


def _no_process_with(marker: str) -> bool:
    for proc in psutil.process_iter(["cmdline"]):
        if marker in " ".join(proc.info["cmdline"] or []):
            return False
    return True


def test_redis_service_serves_its_client_and_stops_when_the_client_ends(
    backend: corral.LocalBackend,
) -> None:
    need("redis-server", "redis-cli")
    b = corral.Batch(name="svc-redis", backend=backend)
    svc = b.new_service("redis", ports=["main"], scheme="redis")
    svc.command(REDIS).ready(exec="redis-cli -p {port.main} ping", deadline=60, grace=5)
    client = b.new_job("client").depends_on(svc, when="ready")
    client.command(
        'redis-cli -h "$CORRAL_SERVICE_REDIS_HOST" -p "$CORRAL_SERVICE_REDIS_PORT" set k v && '
        "redis-cli -u {service.redis.url}/0 get k > "
        + str(client.ofile)
        + "; cat "
        + str(client.ofile)
        + "; echo url=$CORRAL_SERVICE_REDIS_URL"
    )
    handle = b.run(progress=False, timeout=120)
    jobs = {j["job_id"]: j for j in handle.jobs()}
    assert handle.status()["state"] == "success", (jobs, handle.log(1), handle.log(2))
    log = handle.log(2, "main")
    assert jobs[1]["state"] == "Success" and jobs[2]["state"] == "Success"
    assert "v" in log.split() and "url=redis://" in log
    service = handle.job(1)
    svc_status = service["status"]["service"]
    assert svc_status["ready"] is True and svc_status["probes"][0]["ok"] is True
    port = svc_status["ports"]["main"]
    assert f":{port}" in log
    assert _no_process_with(f"--port {port}")
    assert "User requested shutdown" in handle.log(1, "main")  # SIGTERM reached redis (it sets its title)


def test_service_that_never_gets_ready_fails_at_its_deadline_with_the_probe_error(
    backend: corral.LocalBackend,
) -> None:
    b = corral.Batch(name="svc-never", backend=backend)
    svc = b.new_service("sleepy", ports=["main"])
    svc.command(f"exec {NEVER}  # never listens on $CORRAL_PORT_MAIN").ready(tcp="main", deadline=2)
    client = b.new_job("client").depends_on(svc, when="ready")
    client.command("echo never")
    handle = b.run(progress=False, timeout=120, check=False)  # it is meant to fail
    jobs = {j["job_id"]: j for j in handle.jobs()}
    assert jobs[1]["state"] == "Failed"
    assert jobs[2]["state"] == "Cancelled"
    error = handle.job(1)["status"]["error"]
    assert "not ready after 2s" in error and "ConnectionRefused" in error, error
    deadline = time.monotonic() + 20
    while not _no_process_with(NEVER) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _no_process_with(NEVER)


def test_service_killed_mid_run_fails_its_clients_naming_it(backend: corral.LocalBackend) -> None:
    need("redis-server", "redis-cli")
    b = corral.Batch(name="svc-killed", backend=backend)
    svc = b.new_service("cache", ports=["main"])
    svc.command(REDIS).ready(exec="redis-cli -p {port.main} ping", deadline=60)
    client = b.new_job("client").depends_on(svc, when="ready")
    # The client shuts the server down under itself, then keeps running as a load tool would.
    client.command(f'redis-cli -p "$CORRAL_SERVICE_CACHE_PORT" shutdown nosave; {KILLED}')
    handle = b.run(progress=False, timeout=120, check=False)  # it is meant to fail
    jobs = {j["job_id"]: j for j in handle.jobs()}
    assert jobs[1]["state"] == "Failed", jobs
    assert jobs[2]["state"] == "Failed", jobs
    reason = handle.job(2)["status"]["error"]
    assert "service 'cache'" in reason and "job 1" in reason, reason
    deadline = time.monotonic() + 30  # the client's attempt is killed on its worker
    while not _no_process_with(KILLED) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _no_process_with(KILLED)


def test_placement_same_and_other_are_honoured(backend: corral.LocalBackend) -> None:
    need("redis-server", "redis-cli")
    b = corral.Batch(name="svc-place", backend=backend)
    svc = b.new_service("r", ports=["main"]).cpu(0.5)
    svc.command(REDIS).ready(tcp="main")
    same = b.new_job("same").cpu(0.5).depends_on(svc, when="ready", placement="same")
    same.command("redis-cli -p $CORRAL_SERVICE_R_PORT ping")
    other = b.new_job("other").cpu(0.5).depends_on(svc, when="ready", placement="other")
    other.command("redis-cli -h $CORRAL_SERVICE_R_HOST -p $CORRAL_SERVICE_R_PORT ping")
    handle = b.run(progress=False, timeout=120)
    assert handle.status()["state"] == "success", handle.jobs()
    client = backend.client()
    where = {j: client.run(client.aio.job_attempts(handle.id, j))[0].instance_name for j in (1, 2, 3)}
    assert where[2] == where[1]
    assert where[3] != where[1]


def test_cancelling_the_batch_stops_its_service(backend: corral.LocalBackend) -> None:
    need("redis-server", "redis-cli")
    b = corral.Batch(name="svc-cancel", backend=backend)
    svc = b.new_service("r", ports=["main"])
    svc.command(REDIS).ready(tcp="main")
    client = b.new_job("client").depends_on(svc, when="ready")
    client.command(CANCELLED)
    handle = b.submit()
    deadline = time.monotonic() + 60
    while handle.job(2)["state"] != "Running" and time.monotonic() < deadline:
        time.sleep(0.2)
    service = handle.job(1)
    assert service["serving"] is True and service["endpoint"]["ports"]["main"] > 0
    port = service["endpoint"]["ports"]["main"]
    backend.client().run(backend.client().aio.cancel_batch(handle.id))
    handle.wait(progress=False, timeout=60)
    assert {j["state"] for j in handle.jobs()} == {"Cancelled"}
    deadline = time.monotonic() + 20
    while not _no_process_with(f"--port {port}") and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _no_process_with(f"--port {port}") and _no_process_with(CANCELLED)


def test_service_is_stopped_with_sigterm_before_its_grace_period(backend: corral.LocalBackend) -> None:
    b = corral.Batch(name="svc-term", backend=backend)
    svc = b.new_service("web", ports=["main"])
    # A server that says goodbye on SIGTERM; SIGKILL after the grace period would leave no such line.
    svc.command(
        'exec python3 -c "import http.server, os, signal, sys\n'
        "def bye(*_):\n    print('got SIGTERM', flush=True); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "http.server.HTTPServer(('0.0.0.0', int(os.environ['CORRAL_PORT_MAIN'])), "
        'http.server.SimpleHTTPRequestHandler).serve_forever()"'
    ).ready(http="/", grace=60)
    client = b.new_job("client").depends_on(svc, when="ready")
    client.command(
        "python3 -c \"import urllib.request, os; "
        "urllib.request.urlopen(os.environ['CORRAL_SERVICE_WEB_URL'])\""
    )
    handle = b.run(progress=False, timeout=120)
    assert handle.status()["state"] == "success", handle.jobs()
    assert "got SIGTERM" in handle.log(1, "main")
    service = handle.job(1)["status"]["service"]
    assert service["stopped_after_grace"] is False and service["probes"][0]["ok"] is True
