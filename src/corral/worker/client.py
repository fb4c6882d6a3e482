"""HTTP calls to the driver's worker routes, with errors sorted into retry / give up / stop."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

from corral.errors import CorralError

log = logging.getLogger(__name__)
T = TypeVar("T")

PREFIX = "/api/v1/worker"


class DriverError(CorralError):
    pass


class Unauthorized(DriverError):
    """The driver does not know this instance's token (deleted instance): the worker must exit."""


class DriverUnavailable(DriverError):
    """Unreachable, timed out, or a 5xx/429: retry later (the driver may be restarting)."""


class Rejected(DriverError):
    """A 4xx other than 401: this request will not succeed as it is."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class DriverClient:
    def __init__(self, url: str, token: str, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._http = httpx.AsyncClient(
            base_url=url.rstrip("/"),
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(30.0, connect=5.0),
            limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            transport=transport,
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> Any:
        try:
            extra: dict[str, Any] = {} if timeout is None else {"timeout": timeout}
            response = await self._http.request(method, PREFIX + path, **kwargs, **extra)
        except httpx.TransportError as exc:
            raise DriverUnavailable(f"{method} {path}: {exc!r}") from exc
        if response.status_code == 401:
            raise Unauthorized(f"the driver rejected this worker's token: {response.text[:200]}")
        if response.status_code == 429 or response.status_code >= 500:
            raise DriverUnavailable(f"{method} {path}: HTTP {response.status_code}")
        if response.status_code >= 400:
            detail = f"{method} {path}: HTTP {response.status_code}: {response.text[:500]}"
            raise Rejected(detail, response.status_code)
        return response.json() if response.content else {}

    async def activate(
        self, cores_mcpu: int, memory_bytes: int, version: str, runtimes: list[str]
    ) -> dict[str, Any]:
        body = {
            "cores_mcpu": cores_mcpu, "memory_bytes": memory_bytes, "version": version, "runtimes": runtimes,
            "hostname": socket.gethostname(),
        }
        reply: dict[str, Any] = await self._call("POST", "/activate", json=body)
        return reply

    async def poll(self, known: list[str], wait: float) -> dict[str, Any]:
        reply: dict[str, Any] = await self._call(
            "POST", "/poll", json={"known": known, "wait": wait}, timeout=wait + 30.0
        )
        return reply

    async def send_events(self, events: list[dict[str, Any]]) -> list[str]:
        reply = await self._call("POST", "/events", json={"events": events})
        return [str(k) for k in reply.get("ack", [])]

    async def exchange_events(self, events: list[dict[str, Any]], known: list[str]) -> dict[str, Any]:
        """Events with the worker's `known` attempts; the reply is `ack` plus, from a driver that speaks
        it, what a poll would answer (`assign`, `cancel`, `stop`, `shutdown`)."""
        reply: dict[str, Any] = await self._call("POST", "/events", json={"events": events, "known": known})
        return reply

    async def put_log(self, batch_id: int, job_id: int, attempt_id: int, step: str, data: bytes) -> None:
        await self._call(
            "PUT", f"/logs/{batch_id}/{job_id}/{attempt_id}/{step}", content=data,
            headers={"Content-Type": "application/octet-stream"},
        )

    async def deactivate(self) -> None:
        await self._call("POST", "/deactivate", json={})


class Backoff:
    """Exponential delays with jitter, 50 ms up to `cap`; says when a warning is worth logging."""

    def __init__(self, first: float = 0.05, cap: float = 5.0) -> None:
        self.first, self.cap = first, cap
        self.failures = 0
        self._last_warning = 0.0

    def reset(self) -> None:
        self.failures = 0

    def next_delay(self) -> float:
        delay = min(self.cap, self.first * 2**self.failures)
        self.failures += 1
        return float(delay * random.uniform(0.5, 1.0))

    def should_warn(self) -> bool:
        t = time.monotonic()
        if self.failures <= 1 or t - self._last_warning > 30:
            self._last_warning = t
            return True
        return False


async def retry_forever(call: Callable[[], Awaitable[T]], what: str, backoff: Backoff | None = None) -> T:
    """Retry while the driver is unavailable; Unauthorized and Rejected propagate."""
    backoff = backoff or Backoff()
    while True:
        try:
            result = await call()
        except DriverUnavailable as exc:
            if backoff.should_warn():
                log.warning("%s: driver unavailable, retrying: %s", what, exc.message)
            await asyncio.sleep(backoff.next_delay())
            continue
        backoff.reset()
        return result
