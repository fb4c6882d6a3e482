"""Service jobs in the DSL: `svc = b.new_service("redis", ports=["main"])`, `svc.ready(...)`.

svc.command("redis-server --port $CORRAL_PORT_MAIN --save ''")
svc.ready(exec="redis-cli -p {port.main} ping", deadline=30)
client.depends_on(svc, when="ready")   # gets CORRAL_SERVICE_REDIS_HOST/_PORT/_URL
"""

from __future__ import annotations

import shlex
from typing import TYPE_CHECKING, Any, Self

from corral.client.job import Job
from corral.domain.services import parse_service

if TYPE_CHECKING:
    from corral.client.dsl import Batch


class Service(Job):
    """A job that stays up until every job waiting on it has ended; ready when its probes pass."""

    def __init__(self, batch: Batch, index: int, name: str, ports: list[str],
                 attributes: dict[str, str] | None, scheme: str = "http") -> None:
        super().__init__(batch, index, name, attributes)
        self._service = {"ports": list(ports), "probes": [], "scheme": scheme}
        parse_service(self._service, at=f"new_service({name!r})")

    def ready(
        self,
        *,
        tcp: str | None = None,
        http: str | None = None,
        exec: str | list[str] | None = None,
        log: str | None = None,
        port: str | None = None,
        status: int = 200,
        json_field: str | None = None,
        json_value: Any = None,
        deadline: float | None = None,
        interval: float | None = None,
        grace: float | None = None,
    ) -> Self:
        """Add a readiness probe (one of tcp=PORT, http=PATH, exec=COMMAND, log=REGEX) and/or set the
        deadline (s), probe interval (s) and the grace period between SIGTERM and SIGKILL (s)."""
        assert self._service is not None
        service = dict(self._service)
        probes = list(service["probes"])
        given = [k for k, v in (("tcp", tcp), ("http", http), ("exec", exec), ("log", log)) if v is not None]
        if len(given) > 1:
            raise self._error("ready", f"one probe per call; got {', '.join(given)}")
        if tcp is not None:
            probes.append({"kind": "tcp", "port": tcp})
        elif http is not None:
            probe: dict[str, Any] = {"kind": "http", "path": http, "status": status}
            if port is not None:
                probe["port"] = port
            if json_field is not None:
                probe["json_field"] = json_field
                if json_value is not None:
                    probe["json_value"] = json_value
            probes.append(probe)
        elif exec is not None:
            probes.append({"kind": "exec", "command": shlex.split(exec) if isinstance(exec, str) else exec})
        elif log is not None:
            probes.append({"kind": "log", "pattern": log})
        service["probes"] = probes
        for key, value in (("ready_deadline", deadline), ("probe_interval", interval),
                           ("grace_period", grace)):
            if value is not None:
                service[key] = value
        parse_service(service, at=f"{self.display_name}.ready")  # errors now, not at submission
        self._service = service
        return self
