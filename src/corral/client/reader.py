"""A blocking, read-only client for the CLI's read commands (`batch list|get|jobs`, `job get|log`,
`pool …`, `instance …`, `user list`).

A read command must answer in well under half a second, and most of that is start-up: pydantic and
the API schemas cost ~0.17 s to import, asyncio and the client's event-loop thread ~0.03 s. So this
client sends plain GETs with httpx's blocking client and hands back the server's JSON as `Record`s
(attribute access, nested objects too) instead of validated models. The server built that JSON from
the same schemas (`corral.api.schemas`), so every field is there; `--json` prints it unchanged.
Retries and errors follow `corral.client.http.AsyncClient` (shared through `corral.client.errors`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx

from corral.client.retry import settle, tries


class Record(dict[str, Any]):
    """One JSON object from the server, read-only by convention, with its fields as attributes."""

    def __getattr__(self, name: str) -> Any:
        try:
            value = self[name]
        except KeyError:
            raise AttributeError(f"the server's answer has no field {name!r}") from None
        return _wrap(value)


def _wrap(value: Any) -> Any:
    if isinstance(value, dict) and not isinstance(value, Record):
        return Record(value)
    if isinstance(value, list):
        return [_wrap(v) for v in value]
    return value


class ReadClient:
    """GETs against one server as one user; connection errors and 502/503/504 are retried."""

    def __init__(self, url: str, token: str | None, *, retries: int = 3, backoff: float = 0.2,
                 timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.retries = retries
        self.backoff = backoff
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # No CA bundle for a plain-HTTP server (loading it costs ~100 ms).
        verify = not self.url.startswith("http://")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, verify=verify)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> ReadClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, path: str, **params: Any) -> httpx.Response:
        """GET /api/v1{path}; parameters that are None are left out."""
        query = {k: v for k, v in params.items() if v is not None}
        for last, pause in tries(self.retries, self.backoff):
            response, error = None, None
            try:
                response = self._http.get(f"/api/v1{path}", params=query)
            except httpx.TransportError as exc:
                error = exc
            done = settle(self.url, last, response, error)
            if done is not None:
                return done
            time.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    def record(self, path: str, **params: Any) -> Record:
        return Record(self.get(path, **params).json())

    def records(self, path: str, **params: Any) -> list[Record]:
        return [Record(item) for item in self.get(path, **params).json()]

    # ---- batches and jobs

    def list_batches(self, q: str | None = None, *, limit: int | None = None) -> Record:
        """{"batches": [...], "last_batch_id"}"""
        return self.record("/batches", q=q, limit=limit)

    def get_batch(self, batch_id: int) -> Record:
        return self.record(f"/batches/{batch_id}")

    def list_jobs(self, batch_id: int, *, state: str | None = None, last_job_id: int | None = None,
                  limit: int | None = None) -> Record:
        """{"jobs": [...], "last_job_id"}"""
        return self.record(f"/batches/{batch_id}/jobs", state=state, last_job_id=last_job_id, limit=limit)

    def iter_jobs(self, batch_id: int, *, state: str | None = None, page_size: int = 500) -> Iterator[Record]:
        """Every job of a batch (optionally in `state`), page by page."""
        last: int | None = None
        while True:
            page = self.list_jobs(batch_id, state=state, last_job_id=last, limit=page_size)
            yield from page.jobs
            if not page.jobs or page.last_job_id is None:
                return
            last = page.last_job_id

    def get_job(self, batch_id: int, job_id: int) -> Record:
        return self.record(f"/batches/{batch_id}/jobs/{job_id}")

    def job_attempts(self, batch_id: int, job_id: int) -> list[Record]:
        return self.records(f"/batches/{batch_id}/jobs/{job_id}/attempts")

    def job_logs(self, batch_id: int, job_id: int) -> dict[str, str]:
        data = self.get(f"/batches/{batch_id}/jobs/{job_id}/log").json()
        return {str(k): str(v) for k, v in dict(data).items()}

    def job_step_log(self, batch_id: int, job_id: int, step: str) -> str:
        return self.get(f"/batches/{batch_id}/jobs/{job_id}/log/{step}").text

    # ---- the system: pools, instances, users

    def list_pools(self) -> list[Record]:
        return self.records("/pools")

    def get_pool(self, name: str) -> Record:
        return self.record(f"/pools/{name}")

    def list_instances(self, *, pool: str | None = None, ended: int = 0) -> list[Record]:
        return self.records("/instances", pool=pool, ended=ended or None)

    def get_instance(self, name: str) -> Record:
        return self.record(f"/instances/{name}")

    def list_users(self) -> list[Record]:
        return self.records("/users")
