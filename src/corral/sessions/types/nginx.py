"""nginx serving a static file, and wrk (Debian: nginx, wrk). wrk is closed loop only (no wrk2 here)."""

from __future__ import annotations

import re
import subprocess
import time

from corral.sessions.recipe import ClientConfig, ServiceConfig
from corral.sessions.registry import REGISTRY, ClientRun, ClientType, Endpoint, ServiceType, check_params

CONF = """worker_processes {workers};
pid /tmp/nginx/nginx.pid;
error_log stderr warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path /tmp/nginx/body; proxy_temp_path /tmp/nginx/proxy;
  fastcgi_temp_path /tmp/nginx/fcgi; uwsgi_temp_path /tmp/nginx/uwsgi; scgi_temp_path /tmp/nginx/scgi;
  server {{ listen $CORRAL_PORT_MAIN; root /tmp/nginx/www; location / {{ }} }}
}}
"""


@REGISTRY.service
class NginxService(ServiceType):
    name = "nginx"
    description = "nginx serving /index.html of body_bytes bytes (default 612); params: workers, body_bytes"

    def check(self, config: ServiceConfig) -> None:
        check_params(config.params, {"workers", "body_bytes"}, "service")

    def command(self, config: ServiceConfig) -> str:
        workers = int(config.params.get("workers") or 1)  # type: ignore[arg-type]
        size = int(config.params.get("body_bytes") or 612)  # type: ignore[arg-type]
        conf = CONF.format(workers=workers)
        return (
            "mkdir -p /tmp/nginx/www && "
            f"head -c {size} /dev/zero | tr '\\0' x > /tmp/nginx/www/index.html && "
            f"cat > /tmp/nginx/nginx.conf <<EOF\n{conf}EOF\n"
            "exec nginx -p /tmp/nginx -c /tmp/nginx/nginx.conf -g 'daemon off; user root;'"
        )

    def probes(self, config: ServiceConfig) -> list[dict[str, object]]:
        return [{"kind": "http", "port": "main", "path": "/index.html", "status": 200}]


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        raise ValueError(f"not a wrk duration: {text!r}")
    return float(match.group(1)) * _UNITS[match.group(2)]


def parse_wrk(text: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for pct in ("50", "75", "90", "99"):
        m = re.search(rf"^\s+{pct}%\s+(\S+)", text, re.MULTILINE)
        if m:
            out[f"p{pct}_ms"] = _ms(m.group(1))
    m = re.search(r"^\s+Latency\s+(\S+)", text, re.MULTILINE)
    if m:
        out["mean_ms"] = _ms(m.group(1))
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", text)
    if m:
        out["n"] = float(m.group(1))
        out["duration_s"] = _ms(m.group(2) + m.group(3)) / 1000
    m = re.search(r"Requests/sec:\s+([\d.]+)", text)
    if m:
        out["throughput"] = float(m.group(1))
    errors = 0.0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if m:
        errors += float(m.group(1))
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    if m:
        errors += sum(float(g) for g in m.groups())
    out["failures"] = errors
    return out


@REGISTRY.client
class Wrk(ClientType):
    name = "wrk"
    description = "wrk --latency (closed loop: load.concurrency connections); params: path, threads"

    def check(self, config: ClientConfig, at: str) -> None:
        super().check(config, at)
        check_params(config.params, {"path", "threads"}, at)

    def _run(self, config: ClientConfig, ep: Endpoint, seconds: float) -> dict[str, float]:
        path = str(config.params.get("path") or "/index.html")
        conns = config.load.concurrency or 1
        threads = min(int(config.params.get("threads") or 1), conns)  # type: ignore[arg-type]
        url = f"http://{ep.host}:{ep.port}{path}"
        argv = [
            "wrk",
            "-t",
            str(threads),
            "-c",
            str(conns),
            "-d",
            f"{max(1, round(seconds))}s",
            "--latency",
            url,
        ]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=seconds + 60)
        if out.returncode != 0:
            raise RuntimeError(f"wrk exited {out.returncode}: {out.stderr.strip()[-300:]}")
        return parse_wrk(out.stdout)

    def run(self, config: ClientConfig, endpoint: Endpoint, seed: int) -> ClientRun:
        run = ClientRun()
        if config.warmup.duration or config.warmup.requests:
            t0 = time.monotonic()
            warm = self._run(config, endpoint, max(1.0, config.warmup.duration))
            run.warmup = {"requests": warm.get("n", 0), "seconds": round(time.monotonic() - t0, 3)}
        seconds = config.stop.min_duration
        while True:  # both stop conditions: lengthen the run until it has enough requests
            result = self._run(config, endpoint, seconds)
            if result.get("n", 0) >= config.stop.min_requests or seconds >= config.stop.max_duration:
                break
            seconds = min(
                config.stop.max_duration,
                seconds * min(20.0, 1.2 * config.stop.min_requests / max(result.get("n", 1), 1)),
            )
        run.n = int(result.get("n", 0))
        run.failures = int(result.get("failures", 0))
        run.duration_s = result.get("duration_s", seconds)
        run.metrics = {k: (v, "ms") for k, v in result.items() if k.endswith("_ms")}
        ok = run.n - run.failures
        run.metrics["throughput"] = (ok / run.duration_s if run.duration_s and ok > 0 else None, "req/s")
        return run
