"""HTTP calls to the driver's worker routes, with errors sorted into retry / give up / stop."""

from __future__ import annotations

import asyncio
import logging
import random
import socket
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiohttp
import orjson

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
    """One keep-alive session to the driver. aiohttp, not httpx: the worker posts its events on every job's
    end; bench.cpu_per_job measured the worker's CPU a job ~0.5 ms lower with aiohttp (README, issue 18)."""

    def __init__(self, url: str, token: str) -> None:
        self._base = url.rstrip("/") + PREFIX
        self._headers = {"Authorization": f"Bearer {token}"}
        self._session: aiohttp.ClientSession | None = None

    def _http(self) -> aiohttp.ClientSession:
        # Made on first use: a session belongs to the running loop.
        if self._session is None:
            self._session = aiohttp.ClientSession(
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=30.0, connect=5.0),
                connector=aiohttp.TCPConnector(limit=64, ttl_dns_cache=300),
                json_serialize=_dumps,
                raise_for_status=False,
            )
        return self._session

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def _call(self, method: str, path: str, *, timeout: float | None = None, **kwargs: Any) -> Any:
        extra: dict[str, Any] = {} if timeout is None else {"timeout": aiohttp.ClientTimeout(total=timeout)}
        try:
            async with self._http().request(method, self._base + path, **kwargs, **extra) as response:
                status, body = response.status, await response.read()
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DriverUnavailable(f"{method} {path}: {exc!r}") from exc
        if status == 401:
            raise Unauthorized(f"the driver rejected this worker's token: {_text(body, 200)}")
        if status == 429 or status >= 500:
            raise DriverUnavailable(f"{method} {path}: HTTP {status}")
        if status >= 400:
            raise Rejected(f"{method} {path}: HTTP {status}: {_text(body, 500)}", status)
        if not body:
            return {}
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError as exc:  # a proxy's page, a cut reply: try again later
            raise DriverUnavailable(f"{method} {path}: the reply is not JSON: {_text(body, 200)}") from exc

    async def activate(
        self, cores_mcpu: int, memory_bytes: int, version: str, runtimes: list[str], *, queues: bool = False
    ) -> dict[str, Any]:
        body = {
            "cores_mcpu": cores_mcpu, "memory_bytes": memory_bytes, "version": version, "runtimes": runtimes,
            "hostname": socket.gethostname(), "queues": queues,
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
            "PUT", f"/logs/{batch_id}/{job_id}/{attempt_id}/{step}", data=data,
            headers={"Content-Type": "application/octet-stream"},
        )

    async def deactivate(self) -> None:
        await self._call("POST", "/deactivate", json={})


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


def _text(body: bytes, limit: int) -> str:
    return body[:limit].decode(errors="replace")


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
