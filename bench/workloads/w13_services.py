"""W13: service jobs and benchmark sessions, against doing the same by hand on the same machine.

* Startup: seconds from submitting a batch (a redis service + a client waiting for it to be ready) to the
  service being ready (its probes passed, as recorded by the driver), and to the client's first request
  answered; by hand: start redis-server, poll `redis-cli ping` every 10 ms, then run the client. Ratio.
* Harness overhead: redis-benchmark's own p50 latency and throughput (fixed requests and connections)
  run alone against a redis-server started by hand, and the same tool through a Corral session (service
  job + harness client job). Ratio of p50 (1.0 = no overhead on the measured latency).
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable

from bench.context import Context
from bench.corral_server import CorralServer
from bench.model import BenchError, Result, failed, measured
from bench.workloads.common import interleaved, process_worker_settings, rows, start_server

# Clients come through the network (on private networks: the NAT's gateway), not loopback.
REDIS = (
    "exec redis-server --port $CORRAL_PORT_MAIN --save '' --appendonly no --bind 0.0.0.0 --protected-mode no"
)
REQUESTS, CONNECTIONS = 20_000, 4


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_by_hand() -> tuple[subprocess.Popen[bytes], int, float]:
    """Start redis-server and poll until it answers; returns (process, port, seconds to ready)."""
    port = _free_port()
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        ["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    while subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True).returncode != 0:
        if proc.poll() is not None:
            raise BenchError("redis-server exited")
        time.sleep(0.01)
    return proc, port, time.perf_counter() - t0


def by_hand_startup() -> tuple[float, float]:
    t0 = time.perf_counter()
    proc, port, ready = _redis_by_hand()
    try:
        subprocess.run(["redis-cli", "-p", str(port), "ping"], capture_output=True, check=True)
        return ready, time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait()


def corral_startup(server: CorralServer) -> Callable[[], tuple[float, float]]:
    from corral.client.backends import ServiceBackend
    from corral.client.dsl import Batch

    backend = ServiceBackend(server.url, server.token)

    def once() -> tuple[float, float]:
        b = Batch(name="w13", backend=backend)
        svc = b.new_service("redis", ports=["main"])
        svc.command(REDIS).ready(exec="redis-cli -p {port.main} ping", interval=0.01).cpu(0.25)
        client = b.new_job("client").depends_on(svc, when="ready").cpu(0.25)
        client.command(
            'redis-cli -h "$CORRAL_SERVICE_REDIS_HOST" -p "$CORRAL_SERVICE_REDIS_PORT" ping >/dev/null '
            "&& date +%s.%N"
        )
        t0 = time.time()
        handle = b.run(progress=False, timeout=120)
        if handle.status()["state"] != "success":
            raise BenchError(f"W13 batch {handle.id} did not succeed")
        ready = float(handle.job(1)["endpoint"]["time_serving"]) - t0
        first = float(handle.log(2, "main").split()[-1]) - t0
        return ready, first

    return once


def by_hand_benchmark() -> float:
    proc, port, _ = _redis_by_hand()
    try:
        out = subprocess.run(
            [
                "redis-benchmark",
                "-p",
                str(port),
                "-n",
                str(REQUESTS),
                "-c",
                str(CONNECTIONS),
                "--csv",
                "-t",
                "get",
                "-r",
                "100000",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return float(out.stdout.strip().splitlines()[-1].split(",")[4].strip('"'))  # p50_latency_ms
    finally:
        proc.terminate()
        proc.wait()


def corral_benchmark(server: CorralServer) -> Callable[[], float]:
    from corral.client.backends import ServiceBackend
    from corral.sessions import runner
    from corral.sessions.recipe import parse_recipe

    backend = ServiceBackend(server.url, server.token)
    recipe = parse_recipe(
        {
            "name": "w13",
            "service": {"type": "redis", "resources": {"cpu": 0.5}},
            "clients": [
                {
                    "type": "redis-benchmark",
                    "load": {"concurrency": CONNECTIONS},
                    "resources": {"cpu": 0.5},
                    "stop": {"min_duration": 0.01, "min_requests": REQUESTS},
                }
            ],
        }
    )

    def once() -> float:
        session = runner.submit(recipe, backend)
        client = backend.client()
        runner.wait(client, session, timeout=300, interval=0.1)
        runner.finalize(client, session["id"])
        rows_ = runner.get_results(client, session["id"], metric="p50_ms")
        if not rows_ or rows_[0]["value"] is None:
            raise BenchError("W13 session measured nothing")
        return float(rows_[0]["value"])

    return once


def run(ctx: Context) -> list[Result]:
    server = start_server(ctx, "w13", process_worker_settings())
    starts = {"by hand": by_hand_startup, "Corral": corral_startup(server)}
    firsts: dict[str, list[float]] = {name: [] for name in starts}

    def ready_of(name: str) -> Callable[[], float]:
        def value() -> float:
            ready, first = starts[name]()
            firsts[name].append(first)
            return ready
        return value

    repeats = max(3, ctx.sizes.repeats)
    out_ready = interleaved(ctx, "W13 startup", {name: ready_of(name) for name in starts}, repeats)
    results = rows("W13", "submit -> service ready", "s", out_ready, higher_is_better=False,
                   notes={"by hand": "redis-server started, redis-cli ping polled every 10 ms",
                          "Corral": "exec probe every 10 ms; time_serving recorded by the driver"})
    for name, values in firsts.items():
        note = "client job waits with when=ready; its first reply's wall time" if name == "Corral" else ""
        results.append(measured("W13", name, "submit -> first client request", values, "s", note=note)
                       if values else failed("W13", name, "submit -> first client request", "s", "no sample"))
    # The default private network forwards the service's port (slirp4netns, user-space TCP) and NATs the
    # client: against a site with the host_network opt-in, where both use the host's network directly.
    host_net = start_server(ctx, "w13-hostnet", process_worker_settings() | {"jobs": HOST_NETWORK})
    latency = interleaved(ctx, "W13 p50", {"by hand": by_hand_benchmark, "Corral": corral_benchmark(server),
                                           HOST_NET: corral_benchmark(host_net)}, repeats)
    results += rows("W13", f"redis-benchmark GET p50 ({REQUESTS} req, {CONNECTIONS} conns)", "ms", latency,
                    higher_is_better=False,
                    notes={"Corral": "the same tool through a session (service job + harness client job); "
                                     "default private networks: port forwarded by slirp4netns, client NATed",
                           HOST_NET: "the same with [jobs] host_network = true (no NAT, no forward)"})
    return results


HOST_NET = "Corral (host network)"
HOST_NETWORK = '{"host_network": true}'
