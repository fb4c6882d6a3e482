"""Redis (redis-server) and its load tool redis-benchmark (Debian: redis-server, redis-tools)."""

from __future__ import annotations

import csv
import io
import shlex
import subprocess
import time
from typing import Any

from corral.errors import InvalidInput
from corral.sessions.recipe import ClientConfig, ServiceConfig
from corral.sessions.registry import REGISTRY, ClientRun, ClientType, Endpoint, ServiceType, check_params


@REGISTRY.service
class RedisService(ServiceType):
    name = "redis"
    description = "redis-server in the foreground, no persistence; params: io_threads, maxmemory"
    scheme = "redis"

    def check(self, config: ServiceConfig) -> None:
        check_params(config.params, {"io_threads", "maxmemory"}, "service")

    def command(self, config: ServiceConfig) -> str:
        args = [
            "redis-server",
            "--port",
            "$CORRAL_PORT_MAIN",
            "--bind",
            "0.0.0.0",
            "--save",
            "''",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ]
        if config.params.get("io_threads"):
            args += ["--io-threads", str(int(config.params["io_threads"]))]  # type: ignore[arg-type]
        if config.params.get("maxmemory"):
            args += ["--maxmemory", shlex.quote(str(config.params["maxmemory"]))]
        return "exec " + " ".join(args)

    def probes(self, config: ServiceConfig) -> list[dict[str, Any]]:
        return [{"kind": "exec", "command": ["redis-cli", "-p", "{port.main}", "ping"]}]


def parse_csv(text: str) -> dict[str, dict[str, float]]:
    """redis-benchmark --csv: one row per test."""
    rows = [r for r in csv.DictReader(io.StringIO(text.strip())) if r.get("test")]
    return {r["test"].lower(): {k: float(v) for k, v in r.items() if k != "test"} for r in rows}


@REGISTRY.client
class RedisBenchmark(ClientType):
    name = "redis-benchmark"
    description = (
        "redis-benchmark --csv; params: tests (default get), data_size, keyspace, pipeline. "
        "Percentiles are the tool's own (p50, p95, p99; no p90)"
    )

    def check(self, config: ClientConfig, at: str) -> None:
        super().check(config, at)
        check_params(config.params, {"tests", "data_size", "keyspace", "pipeline"}, at)

    def _run(self, config: ClientConfig, ep: Endpoint, n: int) -> tuple[dict[str, dict[str, float]], float]:
        tests = config.params.get("tests") or "get"
        tests = ",".join(str(t) for t in tests) if isinstance(tests, list) else str(tests)
        argv = [
            "redis-benchmark",
            "-h",
            ep.host,
            "-p",
            str(ep.port),
            "-n",
            str(n),
            "-c",
            str(config.load.concurrency or 1),
            "--csv",
            "-t",
            tests,
            "-r",
            str(config.params.get("keyspace") or 100000),
            "-d",
            str(config.params.get("data_size") or 3),
            "-P",
            str(config.params.get("pipeline") or 1),
        ]
        t0 = time.monotonic()
        out = subprocess.run(argv, capture_output=True, text=True, timeout=config.stop.max_duration + 60)
        if out.returncode != 0:
            raise RuntimeError(f"redis-benchmark exited {out.returncode}: {out.stderr.strip()[-300:]}")
        return parse_csv(out.stdout), time.monotonic() - t0

    def run(self, config: ClientConfig, endpoint: Endpoint, seed: int) -> ClientRun:
        run = ClientRun()
        if config.warmup.requests:
            _, took = self._run(config, endpoint, config.warmup.requests)
            run.warmup = {"requests": config.warmup.requests, "seconds": round(took, 3)}
        n = config.stop.min_requests
        while True:  # both stop conditions: grow the request count until the run lasts long enough
            tests, took = self._run(config, endpoint, n)
            if took >= config.stop.min_duration or took >= config.stop.max_duration:
                break
            n = int(n * min(20.0, 1.2 * config.stop.min_duration / max(took, 0.01))) + 1
        first = next(iter(tests.values()))
        run.n, run.duration_s = n * len(tests), took
        run.metrics = {
            "throughput": (first["rps"], "req/s"),
            "mean_ms": (first["avg_latency_ms"], "ms"),
            "p50_ms": (first["p50_latency_ms"], "ms"),
            "p95_ms": (first["p95_latency_ms"], "ms"),
            "p99_ms": (first["p99_latency_ms"], "ms"),
            "max_ms": (first["max_latency_ms"], "ms"),
        }
        for test, row in tests.items():
            run.metrics[f"{test}_throughput"] = (row["rps"], "req/s")
            run.metrics[f"{test}_p99_ms"] = (row["p99_latency_ms"], "ms")
        if not tests:
            raise InvalidInput("redis-benchmark printed no results")
        return run
