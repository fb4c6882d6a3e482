"""Service jobs, pure rules: the service spec, templating of ports and endpoints, clients' environment,
and when a service must stop. No I/O: the worker, the driver and the API all use these.

A service job stays up until it is stopped; its worker allocates its named ports, runs its readiness
probes and reports `serving` with its endpoint. Jobs that wait for it with `when="ready"` start once it
serves and learn its address from CORRAL_SERVICE_<NAME>_* variables and `{service.NAME.url}` templates.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from corral.errors import InvalidInput

ProbeKind = Literal["tcp", "http", "exec", "log"]
Placement = Literal["same", "other"]
PROBE_KINDS: tuple[str, ...] = ("tcp", "http", "exec", "log")
PLACEMENTS: tuple[str, ...] = ("same", "other")
PORT_NAME = re.compile(r"^[a-z][a-z0-9_]{0,31}$")
MAX_PORTS = 16
# Only `{port.X}` and `{service.NAME...}` are templates: other braces (shell, JSON) are left alone.
_TEMPLATE = re.compile(r"\{(port|service)\.([A-Za-z0-9_.-]+)\}")


@dataclass(frozen=True)
class Probe:
    """One readiness check. tcp/http name a port; exec runs a command; log waits for a regex."""

    kind: ProbeKind
    port: str | None = None
    path: str = "/"
    status: int = 200
    json_field: str | None = None  # dotted path in the JSON body that must be present and truthy
    json_value: Any = None  # when set, the field must equal it
    command: tuple[str, ...] = ()
    pattern: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {"kind": self.kind}
        if self.kind in ("tcp", "http"):
            wire["port"] = self.port
        if self.kind == "http":
            wire.update(path=self.path, status=self.status)
            if self.json_field is not None:
                wire["json_field"] = self.json_field
                if self.json_value is not None:
                    wire["json_value"] = self.json_value
        if self.kind == "exec":
            wire["command"] = list(self.command)
        if self.kind == "log":
            wire["pattern"] = self.pattern
        return wire

    def describe(self) -> str:
        if self.kind == "tcp":
            return f"tcp port {self.port}"
        if self.kind == "http":
            extra = f", JSON field {self.json_field}" if self.json_field else ""
            return f"http GET {self.path} on port {self.port} -> {self.status}{extra}"
        if self.kind == "exec":
            return f"exec {' '.join(self.command)}"
        return f"log matches {self.pattern!r}"


@dataclass(frozen=True)
class ServiceSpec:
    ports: tuple[str, ...] = ("main",)
    probes: tuple[Probe, ...] = ()
    ready_deadline: float = 300.0  # seconds from start until every probe must pass
    probe_interval: float = 0.5
    grace_period: float = 10.0  # SIGTERM, then SIGKILL after this many seconds
    failure_threshold: int = 3  # consecutive failed probe rounds after ready: the service is not ready
    scheme: str = "http"  # of the URL handed to clients

    def to_wire(self) -> dict[str, Any]:
        return {
            "ports": list(self.ports),
            "probes": [p.to_wire() for p in self.probes],
            "ready_deadline": self.ready_deadline,
            "probe_interval": self.probe_interval,
            "grace_period": self.grace_period,
            "failure_threshold": self.failure_threshold,
            "scheme": self.scheme,
        }


def _number(
    raw: Mapping[str, Any], name: str, default: float, at: str, low: float, high: float
) -> float:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= float(value) <= high:
        raise InvalidInput(
            f"{at}.{name}: {value!r} must be a number of seconds from {low:g} to {high:g}",
            field=f"{at}.{name}",
        )
    return float(value)


def parse_probe(raw: Any, ports: tuple[str, ...], at: str) -> Probe:
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{at}: a probe is an object with a 'kind'", field=at)
    known = {"kind", "port", "path", "status", "json_field", "json_value", "command", "pattern"}
    for key in raw:
        if key not in known:
            raise InvalidInput(
                f"{at}.{key}: unknown probe field; use {', '.join(sorted(known))}", field=f"{at}.{key}"
            )
    kind = raw.get("kind")
    if kind not in PROBE_KINDS:
        raise InvalidInput(
            f"{at}.kind: {kind!r} is not a probe kind; use tcp, http, exec or log", field=f"{at}.kind"
        )
    port = raw.get("port")
    if kind in ("tcp", "http"):
        port = port if port is not None else ports[0]
        if port not in ports:
            raise InvalidInput(
                f"{at}.port: {port!r} is not one of the service's ports ({', '.join(ports)})",
                field=f"{at}.port",
            )
    status = raw.get("status", 200)
    if kind == "http" and (not isinstance(status, int) or not 100 <= status <= 599):
        raise InvalidInput(f"{at}.status: {status!r} is not an HTTP status", field=f"{at}.status")
    path = str(raw.get("path") or "/")
    if not path.startswith("/"):
        raise InvalidInput(f"{at}.path: {path!r} must start with /", field=f"{at}.path")
    command = raw.get("command") or []
    if kind == "exec" and (
        not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command)
    ):
        raise InvalidInput(
            f"{at}.command: give the exec probe's command as a non-empty list of strings",
            field=f"{at}.command",
        )
    pattern = raw.get("pattern")
    if kind == "log":
        if not isinstance(pattern, str) or not pattern:
            raise InvalidInput(
                f"{at}.pattern: a log probe needs a regular expression", field=f"{at}.pattern"
            )
        try:
            re.compile(pattern)
        except re.error as exc:
            raise InvalidInput(
                f"{at}.pattern: not a regular expression ({exc})", field=f"{at}.pattern"
            ) from None
    return Probe(
        kind=kind,
        port=port if kind in ("tcp", "http") else None,
        path=path,
        status=int(status),
        json_field=raw.get("json_field"),
        json_value=raw.get("json_value"),
        command=tuple(command) if kind == "exec" else (),
        pattern=pattern if kind == "log" else None,
    )


def parse_service(raw: Any, at: str = "service") -> ServiceSpec:
    """A wire/spec dict -> ServiceSpec; InvalidInput names the field."""
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{at}: give the service as an object (ports, probes, ...)", field=at)
    known = {
        "ports",
        "probes",
        "ready_deadline",
        "probe_interval",
        "grace_period",
        "failure_threshold",
        "scheme",
    }
    for key in raw:
        if key not in known:
            raise InvalidInput(
                f"{at}.{key}: unknown service field; use {', '.join(sorted(known))}", field=f"{at}.{key}"
            )
    ports = raw.get("ports", ["main"])
    if not isinstance(ports, list) or not ports or len(ports) > MAX_PORTS:
        raise InvalidInput(f"{at}.ports: give 1 to {MAX_PORTS} port names", field=f"{at}.ports")
    for i, name in enumerate(ports):
        if not isinstance(name, str) or not PORT_NAME.match(name):
            raise InvalidInput(
                f"{at}.ports[{i}]: {name!r} is not a port name (lower-case letters, digits, _; "
                "starting with a letter)",
                field=f"{at}.ports[{i}]",
            )
    if len(set(ports)) != len(ports):
        raise InvalidInput(f"{at}.ports: each port name once", field=f"{at}.ports")
    names = tuple(ports)
    probes_raw = raw.get("probes", [])
    if not isinstance(probes_raw, list):
        raise InvalidInput(f"{at}.probes: give a list of probes", field=f"{at}.probes")
    probes = tuple(parse_probe(p, names, f"{at}.probes[{i}]") for i, p in enumerate(probes_raw))
    if not probes:
        probes = (Probe("tcp", port=names[0]),)  # a service is ready when its first port accepts
    threshold = raw.get("failure_threshold", 3)
    if isinstance(threshold, bool) or not isinstance(threshold, int) or not 1 <= threshold <= 1000:
        raise InvalidInput(
            f"{at}.failure_threshold: {threshold!r} must be an integer from 1 to 1000",
            field=f"{at}.failure_threshold",
        )
    scheme = raw.get("scheme", "http")
    if not isinstance(scheme, str) or not re.match(r"^[a-z][a-z0-9+.-]{0,20}$", scheme):
        raise InvalidInput(f"{at}.scheme: {scheme!r} is not a URL scheme", field=f"{at}.scheme")
    return ServiceSpec(
        ports=names,
        probes=probes,
        ready_deadline=_number(raw, "ready_deadline", 300.0, at, 0.1, 7 * 24 * 3600),
        probe_interval=_number(raw, "probe_interval", 0.5, at, 0.01, 600),
        grace_period=_number(raw, "grace_period", 10.0, at, 0, 3600),
        failure_threshold=threshold,
        scheme=scheme,
    )


def check_placement(value: Any, at: str) -> Placement | None:
    if value is None or value in PLACEMENTS:
        return value  # type: ignore[no-any-return]
    raise InvalidInput(f"{at}: {value!r} is not a placement; use 'same' or 'other'", field=at)


# ---------------------------------------------------------------- endpoints and templates


def env_name(service_name: str) -> str:
    """'my-redis' -> 'MY_REDIS': the <NAME> of CORRAL_SERVICE_<NAME>_*."""
    return re.sub(r"[^A-Za-z0-9]", "_", service_name).upper() or "SERVICE"


@dataclass(frozen=True)
class Endpoint:
    """Where a serving service is reached: an address other instances can reach, and its ports."""

    name: str
    host: str
    ports: dict[str, int] = field(default_factory=dict)
    scheme: str = "http"

    @property
    def port(self) -> int:
        return next(iter(self.ports.values()))

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    def url_of(self, port: str) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.ports[port]}"

    def env(self) -> dict[str, str]:
        prefix = f"CORRAL_SERVICE_{env_name(self.name)}"
        env = {f"{prefix}_HOST": self.host, f"{prefix}_PORT": str(self.port), f"{prefix}_URL": self.url}
        for port_name, port in self.ports.items():
            env[f"{prefix}_PORT_{port_name.upper()}"] = str(port)
        return env

    def to_wire(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "host": self.host,
            "ports": dict(self.ports),
            "scheme": self.scheme,
            "url": self.url,
        }

    @classmethod
    def from_wire(cls, raw: Mapping[str, Any]) -> Endpoint:
        return cls(
            str(raw["name"]),
            str(raw["host"]),
            {str(k): int(v) for k, v in raw["ports"].items()},
            str(raw.get("scheme") or "http"),
        )


def port_env(ports: Mapping[str, int]) -> dict[str, str]:
    env = {f"CORRAL_PORT_{name.upper()}": str(port) for name, port in ports.items()}
    if ports:
        env["CORRAL_PORT"] = str(next(iter(ports.values())))
    return env


def render(
    text: str, ports: Mapping[str, int] | None = None, endpoints: Mapping[str, Endpoint] | None = None
) -> str:
    """Fill `{port.NAME}` (a service's own ports) and `{service.NAME.url|host|port|port.P}`.

    Unknown names are left as they are, so a later stage (or the shell) sees them unchanged.
    """

    def one(match: re.Match[str]) -> str:
        kind, rest = match.group(1), match.group(2)
        if kind == "port":
            if ports is not None and rest in ports:
                return str(ports[rest])
            return match.group(0)
        if endpoints is None:
            return match.group(0)
        for name, ep in endpoints.items():
            if rest == name or rest.startswith(name + "."):
                what = rest[len(name) + 1 :] or "url"
                if what == "url":
                    return ep.url
                if what == "host":
                    return ep.host
                if what == "port":
                    return str(ep.port)
                if what.startswith("port.") and what[5:] in ep.ports:
                    return str(ep.ports[what[5:]])
                if what.startswith("url.") and what[4:] in ep.ports:
                    return ep.url_of(what[4:])
        return match.group(0)

    return _TEMPLATE.sub(one, text)


def client_spec(spec: Mapping[str, Any], endpoints: Mapping[str, Endpoint]) -> dict[str, Any]:
    """A waiting job's spec once its services serve: their variables in env, templates filled."""
    template = spec.get("command_template") or spec.get("command") or []
    env = dict(spec.get("env_template") or spec.get("env") or {})
    for ep in endpoints.values():
        env.update(ep.env())
    env = {k: render(v, endpoints=endpoints) for k, v in env.items()}
    return {
        **spec,
        "command_template": list(template),
        "env_template": dict(spec.get("env_template") or spec.get("env") or {}),
        "command": [render(arg, endpoints=endpoints) for arg in template],
        "env": env,
    }


# ---------------------------------------------------------------- lifetime


def services_to_stop(
    dependents: Mapping[tuple[int, int], Iterable[tuple[int, int]]],
    complete: set[tuple[int, int]],
) -> list[tuple[int, int]]:
    """Services (keys) every one of whose waiting jobs has ended: they are stopped (and end in Success)."""
    return sorted(svc for svc, waiting in dependents.items() if all(w in complete for w in waiting))


def dependent_failure_reason(
    service_name: str, service_job: int, exit_code: int | None, why: str | None
) -> str:
    code = f" with exit code {exit_code}" if exit_code is not None else ""
    detail = f": {why}" if why else ""
    return (
        f"service '{service_name}' (job {service_job}) ended{code} while this job waited on it{detail}"
    )


def placement_allows(placement: Placement | None, service_instance: str | None, instance: str) -> bool:
    if placement is None or service_instance is None:
        return True
    return (instance == service_instance) == (placement == "same")
