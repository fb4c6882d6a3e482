"""The `command` types, for anything: a service command with probes, and a client command whose output
is turned into metrics by JSON lines, CSV columns or regexes (recipe `metrics:`)."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import time

from corral.errors import InvalidInput
from corral.sessions.recipe import ClientConfig, MetricsFrom, ServiceConfig
from corral.sessions.registry import REGISTRY, ClientRun, ClientType, Endpoint, ServiceType


@REGISTRY.service
class CommandService(ServiceType):
    name = "command"
    description = "any service: `command` (with {port.NAME} / $CORRAL_PORT_NAME), `ports`, `ready.probes`"

    def check(self, config: ServiceConfig) -> None:
        if not config.command:
            raise InvalidInput("service.command: the command type needs a command", field="service.command")

    def command(self, config: ServiceConfig) -> str:
        return str(config.command)

    def probes(self, config: ServiceConfig) -> list[dict[str, object]]:
        ports = config.ports or ["main"]
        return [] if config.ready.probes else [{"kind": "tcp", "port": ports[0]}]


def extract_metrics(text: str, spec: MetricsFrom) -> dict[str, float]:
    """Metrics from a command's output. json: the last JSON object line that has the field; csv: the
    last row; regex: the first group of the last match."""
    found: dict[str, float] = {}
    if spec.format == "json":
        for line in text.splitlines():
            line = line.strip()
            if not line.startswith("{"):
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            for metric, key in (spec.fields or {k: k for k in obj}).items():
                if isinstance(obj.get(key), int | float):
                    found[metric] = float(obj[key])
    elif spec.format == "csv":
        rows = list(csv.DictReader(io.StringIO(text.strip())))
        if rows:
            for metric, column in spec.fields.items():
                try:
                    found[metric] = float(rows[-1][column])
                except (KeyError, TypeError, ValueError):
                    continue
    else:
        for metric, pattern in spec.fields.items():
            matches = re.findall(pattern, text, re.MULTILINE)
            if matches:
                last = matches[-1]
                found[metric] = float(last[0] if isinstance(last, tuple) else last)
    return found


@REGISTRY.client
class CommandClient(ClientType):
    name = "command"
    description = (
        "any load tool: `command` (with {service.NAME.url} or $CORRAL_SERVICE_*), `metrics` "
        "(format json|csv|regex, fields: metric -> key/column/regex; `n` and `failures` counted "
        "if given)"
    )

    def check(self, config: ClientConfig, at: str) -> None:
        super().check(config, at)
        if not config.command:
            raise InvalidInput(f"{at}.command: the command type needs a command", field=f"{at}.command")

    def run(self, config: ClientConfig, endpoint: Endpoint, seed: int) -> ClientRun:
        spec = config.metrics or MetricsFrom()
        t0 = time.monotonic()
        out = subprocess.run(
            ["bash", "--noprofile", "--norc", "-c", str(config.command)],
            capture_output=True,
            text=True,
            timeout=config.stop.max_duration + 60,
        )
        took = time.monotonic() - t0
        run = ClientRun(duration_s=took)
        if out.returncode != 0:
            run.error = f"command exited {out.returncode}: {out.stderr.strip()[-300:]}"
            return run
        values = extract_metrics(out.stdout, spec)
        run.n = int(values.pop("n", 0))
        run.failures = int(values.pop("failures", 0))
        run.metrics = {
            k: (v, spec.units.get(k, "ms" if k.endswith("_ms") else "")) for k, v in values.items()
        }
        if not values:
            run.error = "the command's output gave none of the metrics named in `metrics.fields`"
        return run


@REGISTRY.client
class HttpClient(ClientType):
    """A plain HTTP GET load (Python, client-side timing): closed loop or Poisson open loop."""

    name = "http"
    description = "HTTP GET of params.path (default /) on the service, in Python; status 2xx/3xx is success"
    open_loop = True

    def check(self, config: ClientConfig, at: str) -> None:
        super().check(config, at)
        from corral.sessions.registry import check_params

        check_params(config.params, {"path", "timeout"}, at)

    def run(self, config: ClientConfig, endpoint: Endpoint, seed: int) -> ClientRun:
        import asyncio

        import httpx

        from corral.sessions.measure import drive

        path = str(config.params.get("path") or "/")
        url = f"http://{endpoint.host}:{endpoint.port}{path}"

        async def main() -> ClientRun:
            limits = httpx.Limits(max_connections=(config.load.concurrency or 64) + 8)
            timeout = float(str(config.params.get("timeout") or 30))
            async with httpx.AsyncClient(timeout=timeout, limits=limits) as http:

                async def one(_: int) -> tuple[bool, dict[str, float]]:
                    response = await http.get(url)
                    await response.aread()
                    return response.status_code < 400, {}

                return await drive(one, config.load, config.stop, config.warmup, seed)

        return asyncio.run(main())
