"""Service and client types, registered by name: built-ins here, third-party ones through the Python entry
points `corral.bench.services` and `corral.bench.clients` (each names a ServiceType / ClientType class).

A service type says how to start the service (a shell command using $CORRAL_PORT_<NAME>) and how to know
it is ready (probes). A client type says how to load it: `run()` executes ON THE INSTANCE inside the
client job (through `python -m corral.sessions.harness`) and returns a ClientRun of measured samples
or of the metrics the load tool printed.
"""

from __future__ import annotations

import importlib
import logging
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from typing import Any, ClassVar

from corral.errors import InvalidInput
from corral.sessions.recipe import ClientConfig, ServiceConfig

log = logging.getLogger(__name__)

SERVICE_GROUP = "corral.bench.services"
CLIENT_GROUP = "corral.bench.clients"
BUILTIN_MODULES = (
    "corral.sessions.types.command",
    "corral.sessions.types.redis",
    "corral.sessions.types.nginx",
    "corral.sessions.types.postgres",
    "corral.sessions.types.llm",
)


@dataclass
class Endpoint:
    """What a client sees of its service (from CORRAL_SERVICE_<NAME>_* in its environment)."""

    host: str
    port: int
    url: str
    ports: dict[str, int] = field(default_factory=dict)


@dataclass
class ClientRun:
    """One measured client run. `samples`: per-request (start offset s, latency ms, ok, extras);
    tools that only print summaries give `metrics` instead (name -> (value, unit))."""

    samples: list[tuple[float, float, bool, dict[str, float]]] = field(default_factory=list)
    metrics: dict[str, tuple[float | None, str]] = field(default_factory=dict)
    duration_s: float = 0.0
    n: int = 0
    failures: int = 0
    warmup: dict[str, Any] = field(default_factory=dict)
    timeseries: list[dict[str, float]] = field(default_factory=list)  # per second, warm-up included
    error: str | None = None
    tool_version: str | None = None


class ServiceType(ABC):
    name: ClassVar[str]
    description: ClassVar[str] = ""
    ports: ClassVar[tuple[str, ...]] = ("main",)
    scheme: ClassVar[str] = "http"

    @abstractmethod
    def command(self, config: ServiceConfig) -> str:
        """A bash command that runs the service in the foreground (exec it), on $CORRAL_PORT_<NAME>."""

    def probes(self, config: ServiceConfig) -> list[dict[str, Any]]:
        """Readiness probes (docs/worker-protocol.md); the recipe's own probes are added to these."""
        return [{"kind": "tcp", "port": self.ports[0]}]

    def check(self, config: ServiceConfig) -> None:  # noqa: B027 - optional hook
        """Refuse params this type does not understand: InvalidInput naming `service.params.X`."""


class ClientType(ABC):
    name: ClassVar[str]
    description: ClassVar[str] = ""
    open_loop: ClassVar[bool] = False  # supports load.rate (Poisson arrivals)
    metric_units: ClassVar[dict[str, str]] = {}

    def check(self, config: ClientConfig, at: str) -> None:
        if config.load.rate is not None and not self.open_loop:
            raise InvalidInput(
                f"{at}.load.rate: the {self.name} client has no open-loop mode; use load.concurrency",
                field=f"{at}.load.rate",
            )

    @abstractmethod
    def run(self, config: ClientConfig, endpoint: Endpoint, seed: int) -> ClientRun:
        """Warm up, then load the service until stop.min_duration AND stop.min_requests; on the instance."""


def check_params(params: dict[str, Any], known: set[str], at: str) -> None:
    for key in params:
        if key not in known:
            allowed = ", ".join(sorted(known)) or "none"
            raise InvalidInput(
                f"{at}.params.{key}: unknown parameter; this type takes {allowed}",
                field=f"{at}.params.{key}",
            )


class Registry:
    def __init__(self) -> None:
        self.services: dict[str, type[ServiceType]] = {}
        self.clients: dict[str, type[ClientType]] = {}
        self.origins: dict[str, str] = {}
        self._loaded = False

    def service(self, cls: type[ServiceType]) -> type[ServiceType]:
        self.services[cls.name] = cls
        return cls

    def client(self, cls: type[ClientType]) -> type[ClientType]:
        self.clients[cls.name] = cls
        return cls

    def load(self) -> None:
        if self._loaded:
            return
        self._loaded = True
        for module in BUILTIN_MODULES:
            importlib.import_module(module)
        for group, table in ((SERVICE_GROUP, self.services), (CLIENT_GROUP, self.clients)):
            for ep in entry_points(group=group):
                try:
                    cls = ep.load()
                except Exception as exc:  # a broken plug-in must not take the built-ins down
                    log.warning("entry point %s = %s could not be loaded: %r", ep.name, ep.value, exc)
                    continue
                table[ep.name] = cls  # type: ignore[assignment]
                self.origins[f"{group}:{ep.name}"] = ep.value

    def service_type(self, name: str, at: str = "service.type") -> ServiceType:
        self.load()
        if name not in self.services:
            raise InvalidInput(
                f"{at}: unknown service type {name!r}; known: {', '.join(sorted(self.services))}", field=at
            )
        return self.services[name]()

    def client_type(self, name: str, at: str) -> ClientType:
        self.load()
        if name not in self.clients:
            raise InvalidInput(
                f"{at}: unknown client type {name!r}; known: {', '.join(sorted(self.clients))}", field=at
            )
        return self.clients[name]()


REGISTRY = Registry()
