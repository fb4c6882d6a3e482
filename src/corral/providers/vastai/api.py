"""The vast.ai REST API as the provider uses it: search, rent, list, show, destroy, SSH keys.

429 and 5xx are retried with exponential backoff (the API sends no Retry-After). The key travels only in the
Authorization header: it is never put in a URL, a log line or an exception message.
"""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

import httpx

from corral.errors import CorralError

log = logging.getLogger("corral.providers.vastai")

RETRIED = {429, 500, 502, 503, 504}


class VastApiError(CorralError):
    def __init__(self, message: str, *, status: int = 0, body: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body


class OfferGone(VastApiError):
    """The ask was rented by someone else between the search and the rent."""


class RentRejected(VastApiError):
    """The rent failed; `new_contract` is an instance that exists anyway (a too-low bid) and must go."""

    def __init__(self, message: str, *, status: int, body: Any, new_contract: int | None) -> None:
        super().__init__(message, status=status, body=body)
        self.new_contract = new_contract


class RentTimedOut(VastApiError):
    """The rent call did not answer: the instance may or may not exist (reconcile by label)."""


class VastClient:
    def __init__(
        self, url: str, api_key: str, *, timeout: float = 30.0, retries: int = 5, retry_base: float = 1.0
    ) -> None:
        self._key = api_key
        self.retries = retries
        self.retry_base = retry_base
        self.calls: dict[str, int] = {}
        self._http = httpx.AsyncClient(
            base_url=url.rstrip("/"),
            timeout=timeout,
            headers={"Authorization": f"Bearer {api_key}"},
        )

    def __repr__(self) -> str:
        return f"VastClient({self._http.base_url!s})"  # never the key

    async def close(self) -> None:
        await self._http.aclose()

    async def _call(
        self,
        what: str,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        timeout: float | None = None,
    ) -> httpx.Response:
        self.calls[what] = self.calls.get(what, 0) + 1
        for attempt in range(self.retries + 1):
            kwargs: dict[str, Any] = {"json": json, "params": params}
            if timeout is not None:
                kwargs["timeout"] = timeout
            try:
                response = await self._http.request(method, path, **kwargs)
            except httpx.TimeoutException:
                raise
            except httpx.TransportError as exc:
                if attempt >= self.retries:
                    raise VastApiError(f"vast.ai {what}: {type(exc).__name__}: {exc}") from None
                await self._backoff(what, attempt, type(exc).__name__)
                continue
            if response.status_code in RETRIED and attempt < self.retries:
                await self._backoff(what, attempt, str(response.status_code))
                continue
            if response.status_code == 401:
                raise VastApiError(
                    f"vast.ai {what}: the API key was refused (401 {_message(response)})",
                    status=401,
                    body=_body(response),
                )
            return response
        raise AssertionError("unreachable")

    async def _backoff(self, what: str, attempt: int, why: str) -> None:
        delay = self.retry_base * (2**attempt) * random.uniform(0.75, 1.25)
        log.info("vast.ai %s: %s, retrying in %.2fs", what, why, delay)
        await asyncio.sleep(delay)

    @staticmethod
    def _check(what: str, response: httpx.Response) -> Any:
        if response.status_code >= 400:
            raise VastApiError(
                f"vast.ai {what}: {response.status_code} {_message(response)}",
                status=response.status_code,
                body=_body(response),
            )
        return response.json()

    # ------------------------------------------------------------ endpoints

    async def search_offers(self, query: dict[str, Any]) -> list[dict[str, Any]]:
        data = self._check("search", await self._call("search", "POST", "/api/v0/bundles/", json=query))
        return list(data.get("offers") or [])

    async def rent(self, ask_id: int, body: dict[str, Any], *, timeout: float) -> int:
        """The new instance id; OfferGone, RentRejected (maybe with an instance to destroy), RentTimedOut."""
        try:
            response = await self._call(
                "create", "PUT", f"/api/v0/asks/{ask_id}/", json=body, timeout=timeout
            )
        except httpx.TimeoutException:
            raise RentTimedOut(
                f"vast.ai create of ask {ask_id} did not answer within {timeout:.0f}s"
            ) from None
        data = _body(response)
        if response.status_code in (404, 410) or (
            isinstance(data, dict) and data.get("error") == "no_such_ask"
        ):
            raise OfferGone(
                f"offer {ask_id} is gone ({_message(response)})", status=response.status_code, body=data
            )
        contract = data.get("new_contract") if isinstance(data, dict) else None
        if response.status_code >= 400 or not (isinstance(data, dict) and data.get("success")):
            raise RentRejected(
                f"vast.ai create of ask {ask_id}: {response.status_code} {_message(response)}",
                status=response.status_code,
                body=data,
                new_contract=int(contract) if contract else None,
            )
        if contract is None:
            raise VastApiError(f"vast.ai create of ask {ask_id}: no new_contract in {data!r}"[:400])
        return int(contract)

    async def list_instances(self) -> list[dict[str, Any]]:
        """Every instance of the account (all pages)."""
        out: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100}
            if token:
                params["after_token"] = token
            data = self._check("list", await self._call("list", "GET", "/api/v1/instances/", params=params))
            out.extend(data.get("instances") or [])
            token = data.get("next_token")
            if not token:
                return out

    async def show_instance(self, instance_id: int) -> dict[str, Any] | None:
        data = self._check("show", await self._call("show", "GET", f"/api/v0/instances/{instance_id}/"))
        found = data.get("instances")
        return dict(found) if isinstance(found, dict) else None

    async def destroy(self, instance_id: int) -> bool:
        """True when destroyed now, False when it was already gone (404)."""
        response = await self._call("destroy", "DELETE", f"/api/v0/instances/{instance_id}/")
        if response.status_code == 404:
            return False
        self._check("destroy", response)
        return True

    async def add_ssh_key(self, public_key: str) -> None:
        self._check(
            "ssh key", await self._call("ssh key", "POST", "/api/v0/ssh/", json={"ssh_key": public_key})
        )


def _body(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return response.text


def _message(response: httpx.Response) -> str:
    body = _body(response)
    if isinstance(body, dict):
        return str(body.get("msg") or body.get("detail") or body.get("error") or body)[:300]
    return str(body)[:300]
