"""The worker's part of service jobs: allocate the service's ports on this instance, run it, probe it
until ready (or its deadline), report `serving` with an endpoint other instances can reach, keep probing
while it serves, and stop it on request (SIGTERM, then SIGKILL after the grace period).

How a service attempt ends: stopped on request -> succeeded (its exit code recorded); not ready by its
deadline, exited on its own, or no longer ready while serving -> failed, with the probes' last error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import urlsplit

import httpx
import psutil

from corral.domain.services import Probe, ServiceSpec, parse_service, port_env, render
from corral.errors import InvalidInput
from corral.runtimes.base import MainRequest, MainResult, Runtime, now
from corral.runtimes.network import PRIVATE_JOB_ADDRESS, connect_inside, published_namespace

log = logging.getLogger(__name__)

KEY_ENV = "CORRAL_SERVICE_KEY"  # marks the service's processes, so a stop can SIGTERM exactly them
PROBE_TIMEOUT = 5.0


def allocate_ports(names: tuple[str, ...]) -> dict[str, int]:
    """Free ports of this instance, one per name (bound to port 0 by the kernel, then released)."""
    sockets: list[socket.socket] = []
    ports: dict[str, int] = {}
    try:
        for name in names:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("", 0))
            sockets.append(s)
            ports[name] = int(s.getsockname()[1])
    finally:
        for s in sockets:
            s.close()
    return ports


def advertised_host(driver_url: str) -> str:
    """The address other instances reach this one at: CORRAL_WORKER_ADDRESS, else the local address of
    the route to the driver (loopback only when the driver itself is on loopback)."""
    configured = os.environ.get("CORRAL_WORKER_ADDRESS")
    if configured:
        return configured
    host = urlsplit(driver_url).hostname or "127.0.0.1"
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((host, 9))  # UDP connect sends nothing: it only picks the route
            return str(s.getsockname()[0])
    except OSError:
        return "127.0.0.1"


def external_address() -> str | None:
    """A non-loopback IPv4 address of this instance: the source of its default route, else the first of
    an interface that is up. What jobs on private (NAT) networks reach the instance's published ports at."""
    with contextlib.suppress(OSError), socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("203.0.113.1", 9))  # a documentation address: only the route is looked up, nothing sent
        address = str(s.getsockname()[0])
        if not address.startswith("127."):
            return address
    stats = psutil.net_if_stats()
    for name, addresses in psutil.net_if_addrs().items():
        if name in stats and not stats[name].isup:
            continue
        for a in addresses:
            if a.family == socket.AF_INET and not a.address.startswith("127."):
                return str(a.address)
    return None


@dataclass
class ProbeResult:
    probe: Probe
    ok: bool = False
    error: str | None = None
    duration_ms: int = 0
    attempts: int = 0

    def to_wire(self) -> dict[str, Any]:
        return {
            "probe": self.probe.describe(),
            "ok": self.ok,
            "error": self.error,
            "duration_ms": self.duration_ms,
            "attempts": self.attempts,
        }


def _json_field(body: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(body, list) and part.isdigit() and int(part) < len(body):
            body = body[int(part)]
        elif isinstance(body, dict) and part in body:
            body = body[part]
        else:
            raise KeyError(path)
    return body


async def run_probe(
    probe: Probe, ports: dict[str, int], log_path: Any, env: dict[str, str], http: httpx.AsyncClient
) -> str | None:
    """None when the probe passes, else why it did not."""
    try:
        if probe.kind == "tcp":
            await _connect(ports[probe.port or ""])
            return None
        if probe.kind == "http":
            port = ports[probe.port or ""]
            if published_namespace(port) is not None:
                await _connect(port)  # a clear "refused" before the forward's bare disconnect
            url = f"http://127.0.0.1:{port}{probe.path}"
            response = await http.get(url, timeout=PROBE_TIMEOUT)
            if response.status_code != probe.status:
                return f"GET {probe.path} answered {response.status_code}, expected {probe.status}"
            if probe.json_field:
                try:
                    value = _json_field(response.json(), probe.json_field)
                except (KeyError, ValueError):
                    return f"GET {probe.path}: no JSON field {probe.json_field!r} in the answer"
                if probe.json_value is not None and value != probe.json_value:
                    return f"GET {probe.path}: {probe.json_field} is {value!r}, expected {probe.json_value!r}"
                if probe.json_value is None and not value:
                    return f"GET {probe.path}: {probe.json_field} is {value!r}"
            return None
        if probe.kind == "exec":
            command = [render(arg, ports=ports) for arg in probe.command]
            proc = await asyncio.create_subprocess_exec(
                *command,
                env={**os.environ, **env},
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            try:
                out, _ = await asyncio.wait_for(proc.communicate(), PROBE_TIMEOUT)
            except TimeoutError:
                proc.kill()
                await proc.wait()
                return f"{command[0]} did not finish in {PROBE_TIMEOUT:g}s"
            if proc.returncode != 0:
                tail = out.decode(errors="replace").strip()[-200:]
                return f"{command[0]} exited {proc.returncode}" + (f": {tail}" if tail else "")
            return None
        text = await asyncio.to_thread(_read_text, log_path)
        if re.search(probe.pattern or "", text, re.MULTILINE):
            return None
        return f"no line of the log matches {probe.pattern!r} yet"
    except (OSError, httpx.HTTPError, TimeoutError) as exc:
        return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


async def _connect(port: int) -> None:
    """Is the service listening on `port`? On a private network: where the instance's port leads (in
    the job's namespace), since slirp4netns accepts on the instance's side before the job listens."""
    netns = published_namespace(port)
    if netns is not None:
        await connect_inside(netns, PRIVATE_JOB_ADDRESS, port, PROBE_TIMEOUT)
        return
    _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), PROBE_TIMEOUT)
    writer.close()
    with contextlib.suppress(OSError):
        await writer.wait_closed()


def _read_text(path: Any) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


def signal_service(key: str, sig: int) -> int:
    """Send `sig` to the service's own processes (not the sandbox around them); how many got it.

    The marked processes are found by KEY_ENV; their descendants too, since servers that set their
    process title (redis, nginx, postgres) overwrite the environment /proc shows.
    """
    me = os.getpid()
    marked: list[psutil.Process] = []
    for proc in psutil.process_iter(["pid"]):
        if proc.info["pid"] == me:
            continue
        try:
            if proc.environ().get(KEY_ENV) == key:
                marked.append(proc)
        except (psutil.Error, OSError):
            continue
    targets: dict[int, psutil.Process] = {}
    for proc in marked:
        try:
            for member in [proc, *proc.children(recursive=True)]:
                targets[member.pid] = member
        except psutil.Error:
            continue
    sent = 0
    for pid, member in targets.items():
        try:
            if member.name() in _SANDBOX:
                continue
            os.kill(pid, sig)
            sent += 1
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
    return sent


_SANDBOX = frozenset({"bwrap", "runc", "crun", "conmon"})


class ServiceRunner:
    """One worker's services: stop requests by attempt key, and how each service attempt runs."""

    def __init__(self, driver_url: str) -> None:
        self.host = advertised_host(driver_url)
        self._external: str | None = None
        self._stops: dict[str, asyncio.Event] = {}

    def nat_host(self) -> str:
        """The endpoint of a service on a private network: jobs on private networks cannot reach the
        instance's loopback, so a loopback address (a driver on this machine) gives way to an external one;
        an IPv6 one too (the forward is IPv4)."""
        if not self.host.startswith("127.") and ":" not in self.host:  # slirp4netns forwards IPv4 only
            return self.host
        if self._external is None:
            self._external = external_address() or self.host
            if self._external == self.host:
                log.warning("no external IPv4 address: jobs on private networks cannot reach services here")
        return self._external

    def request_stop(self, key: str) -> bool:
        event = self._stops.get(key)
        if event is None:
            return False
        event.set()
        return True

    async def run_main(
        self,
        request: MainRequest,
        raw_service: dict[str, Any],
        runtime: Runtime,
        cancel: asyncio.Event,
        emit: Callable[[dict[str, Any]], None],
    ) -> tuple[MainResult, dict[str, Any]]:
        try:
            spec = parse_service(raw_service)
        except InvalidInput as exc:
            t = now()
            return MainResult("error", t, t, error=f"bad service spec: {exc.message}"), {}
        stop = self._stops.setdefault(request.key, asyncio.Event())
        try:
            return await self._run(request, spec, runtime, cancel, stop, emit)
        finally:
            self._stops.pop(request.key, None)

    async def _run(
        self,
        request: MainRequest,
        spec: ServiceSpec,
        runtime: Runtime,
        cancel: asyncio.Event,
        stop: asyncio.Event,
        emit: Callable[[dict[str, Any]], None],
    ) -> tuple[MainResult, dict[str, Any]]:
        ports = allocate_ports(spec.ports)
        env = {**request.env, **port_env(ports), KEY_ENV: request.key}
        env = {k: render(v, ports=ports) for k, v in env.items()}
        request = replace(request, command=[render(a, ports=ports) for a in request.command], env=env)
        host, network = self.host, runtime.network_of(request.network)
        if network == "nat":  # a private network: the instance's ports forwarded to the job's
            request = replace(request, published_ports=tuple(ports.values()))
            host = self.nat_host()
        kill = asyncio.Event()
        main = asyncio.create_task(runtime.run(request, kill))
        results = [ProbeResult(p) for p in spec.probes]
        info: dict[str, Any] = {"ports": ports, "host": host, "network": network, "ready": False}
        t0 = time.monotonic()
        outcome = "exited"
        async with httpx.AsyncClient() as http:
            probing = _Probing(spec, results, ports, request, env, http, main, cancel, stop)
            ready_at = await probing.until_ready()
            info["probes"] = [r.to_wire() for r in results]
            if ready_at is None:
                outcome = (
                    "cancelled"
                    if cancel.is_set()
                    else "stopped"
                    if stop.is_set()
                    else ("exited" if main.done() else "not_ready")
                )
            else:
                info.update(ready=True, ready_seconds=round(ready_at - t0, 3))
                emit(
                    {
                        "type": "serving",
                        "key": request.key,
                        "time": now(),
                        "endpoint": {"host": host, "ports": ports, "scheme": spec.scheme},
                        "probes": info["probes"],
                        "ready_seconds": info["ready_seconds"],
                    }
                )
                outcome = await probing.while_serving()
                info["probes"] = [r.to_wire() for r in results]
        if outcome == "stopped" and not main.done():
            signal_service(request.key, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(main), spec.grace_period)
            info["stopped_after_grace"] = not main.done()
        kill.set()  # SIGKILL whatever is left (the runtime kills the whole sandbox)
        result = await main
        last_error = next((r.error for r in results if r.error), None)
        info["last_error"] = last_error
        if outcome == "cancelled":
            result.state = "cancelled"
        elif outcome == "stopped":
            result.state, result.error = (
                "succeeded",
                None,
            )  # stopped on request: that is how services end
        elif outcome == "not_ready":
            result.state = "failed"
            result.error = (
                f"service not ready after {spec.ready_deadline:g}s: {last_error or 'probes failed'}"
            )
        elif outcome == "unready":
            result.state = "failed"
            result.error = (
                f"service stopped being ready ({spec.failure_threshold} probe rounds failed): "
                f"{last_error}"
            )
        elif result.state != "error" or result.error is None:
            result.state = "failed"
            code = result.exit_code
            when = "while serving" if info["ready"] else "before it was ready"
            result.error = f"service exited with code {code} {when}" + (
                f" (last probe error: {last_error})" if last_error and not info["ready"] else ""
            )
        return result, info


@dataclass
class _Probing:
    """One service attempt's probes: rounds until ready, then liveness rounds while it serves; each wait
    ends early when the service's main process exits, the attempt is cancelled or asked to stop."""

    spec: ServiceSpec
    results: list[ProbeResult]
    ports: dict[str, int]
    request: MainRequest
    env: dict[str, str]
    http: httpx.AsyncClient
    main: asyncio.Task[MainResult]
    cancel: asyncio.Event
    stop: asyncio.Event

    async def round(self) -> bool:
        ok = True
        for r in self.results:
            start = time.monotonic()
            error = await run_probe(r.probe, self.ports, self.request.log_path, self.env, self.http)
            r.attempts += 1
            r.duration_ms = round((time.monotonic() - start) * 1000)
            r.ok, r.error = error is None, error
            ok = ok and error is None
        return ok

    async def until_ready(self) -> float | None:
        deadline = time.monotonic() + self.spec.ready_deadline
        while time.monotonic() < deadline:
            if self.main.done() or self.cancel.is_set() or self.stop.is_set():
                return None
            if await self.round():
                return time.monotonic()
            await _wait_any(self.main, self.cancel, self.stop,
                            timeout=min(self.spec.probe_interval, deadline - time.monotonic()))
        return None

    async def while_serving(self) -> str:
        failures = 0
        interval = max(self.spec.probe_interval, 1.0)  # liveness: gentler than the readiness loop
        while True:
            await _wait_any(self.main, self.cancel, self.stop, timeout=interval)
            if self.cancel.is_set():
                return "cancelled"
            if self.stop.is_set():
                return "stopped"
            if self.main.done():
                return "exited"
            if await self.round():
                failures = 0
            else:
                failures += 1
                if failures >= self.spec.failure_threshold:
                    return "unready"


async def _wait_any(
    main: asyncio.Task[MainResult], cancel: asyncio.Event, stop: asyncio.Event, timeout: float
) -> None:
    waiters = [asyncio.ensure_future(cancel.wait()), asyncio.ensure_future(stop.wait())]
    try:
        await asyncio.wait(
            [main, *waiters], timeout=max(0.0, timeout), return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        for w in waiters:
            w.cancel()
