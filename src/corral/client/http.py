"""Async HTTP client for the REST API (/api/v1): one typed method per route, retries, typed errors.

The blocking side (`corral.client.sync.SyncClient`) runs this same client on a private event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from typing import Any

import httpx
from pydantic import TypeAdapter

from corral.api.schemas import (
    AttemptStatus,
    BatchList,
    BatchSpec,
    BatchStatus,
    BillingProjectStatus,
    BillingReport,
    CreateBatchResponse,
    CreateUpdateResponse,
    JobList,
    JobSpec,
    JobStatus,
    JobSummary,
    UserCreated,
)
from corral.api.system_schemas import (
    InstanceStatus,
    InstanceToken,
    InstanceTokenRequest,
    PoolStatus,
    UserInfo,
)
from corral.client.errors import ServerError, ServerUnreachable, error_from_response
from corral.client.retry import settle, tries

_ATTEMPTS = TypeAdapter(list[AttemptStatus])
_PROJECTS = TypeAdapter(list[BillingProjectStatus])
_POOLS = TypeAdapter(list[PoolStatus])
_INSTANCES = TypeAdapter(list[InstanceStatus])
_USERS = TypeAdapter(list[UserInfo])
__all__ = ["AsyncClient", "ServerError", "ServerUnreachable", "error_from_response"]


def _dump_jobs(bunch: Sequence[JobSpec]) -> list[dict[str, Any]]:
    return [j.model_dump(mode="json", by_alias=True, exclude_none=True) for j in bunch]


class AsyncClient:
    """Talks to one Corral server as one user (Bearer token)."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 60.0,
        retries: int = 8,
        backoff: float = 0.2,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self.retries = retries
        self.backoff = backoff
        # Loading the CA bundle costs ~100 ms per client; a plain-HTTP server never uses it.
        verify = not self.url.startswith("http://")
        self._http = httpx.AsyncClient(
            base_url=self.url, headers=headers, timeout=timeout, transport=transport, verify=verify
        )

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        idempotent: bool = True,
    ) -> httpx.Response:
        """Send with retries: connection errors and 502/503/504 back off exponentially with jitter.

        A non-idempotent request is retried only when it certainly never reached the server.
        """
        query = {k: v for k, v in (params or {}).items() if v is not None}
        for last, pause in tries(self.retries, self.backoff):
            response, error = None, None
            try:
                response = await self._http.request(method, path, json=json, params=query)
            except httpx.TransportError as exc:
                error = exc
            done = settle(self.url, last, response, error, idempotent=idempotent)
            if done is not None:
                return done
            await asyncio.sleep(pause)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _json(self, method: str, path: str, **kwargs: Any) -> Any:
        return (await self.request(method, path, **kwargs)).json()

    # ---- meta

    async def healthcheck(self) -> bool:
        try:
            response = await self._http.get("/healthcheck", timeout=5)
        except httpx.HTTPError:
            return False
        return response.status_code == 200

    async def version(self) -> str:
        return str((await self._json("GET", "/api/v1/version"))["version"])

    async def me(self) -> dict[str, Any]:
        return dict(await self._json("GET", "/api/v1/me"))

    async def check_invariants(self) -> dict[str, Any]:
        """The server's invariant checks (admin): {"ok", "checked", "violations": [{"check", "detail"}]}."""
        return dict(await self._json("GET", "/api/v1/admin/check"))

    # ---- batches

    async def create_fast(self, batch: BatchSpec, bunch: Sequence[JobSpec]) -> CreateBatchResponse:
        body = {"batch": batch.model_dump(mode="json", exclude_none=True), "bunch": _dump_jobs(bunch)}
        return CreateBatchResponse.model_validate(
            await self._json("POST", "/api/v1/batches/create-fast", json=body)
        )

    async def create_batch(self, batch: BatchSpec) -> CreateBatchResponse:
        body = batch.model_dump(mode="json", exclude_none=True)
        return CreateBatchResponse.model_validate(
            await self._json("POST", "/api/v1/batches/create", json=body)
        )

    async def create_jobs(self, batch_id: int, update_id: int, bunch: Sequence[JobSpec]) -> int:
        """Upload one bunch of an uncommitted update; returns how many jobs were new (0: a repeat)."""
        path = f"/api/v1/batches/{batch_id}/updates/{update_id}/jobs/create"
        return int((await self._json("POST", path, json=_dump_jobs(bunch))).get("inserted", 0))

    async def commit_update(self, batch_id: int, update_id: int) -> dict[str, Any]:
        return dict(await self._json("PATCH", f"/api/v1/batches/{batch_id}/updates/{update_id}/commit"))

    async def update_fast(self, batch_id: int, token: str, bunch: Sequence[JobSpec]) -> CreateUpdateResponse:
        body = {"update": {"token": token, "n_jobs": len(bunch)}, "bunch": _dump_jobs(bunch)}
        return CreateUpdateResponse.model_validate(
            await self._json("POST", f"/api/v1/batches/{batch_id}/update-fast", json=body)
        )

    async def create_update(self, batch_id: int, token: str, n_jobs: int) -> CreateUpdateResponse:
        body = {"token": token, "n_jobs": n_jobs}
        return CreateUpdateResponse.model_validate(
            await self._json("POST", f"/api/v1/batches/{batch_id}/updates/create", json=body)
        )

    async def list_batches(
        self,
        q: str | None = None,
        *,
        state: str | None = None,
        last_batch_id: int | None = None,
        limit: int | None = None,
    ) -> BatchList:
        params = {"q": q, "state": state, "last_batch_id": last_batch_id, "limit": limit}
        return BatchList.model_validate(await self._json("GET", "/api/v1/batches", params=params))

    async def get_batch(self, batch_id: int, *, wait: float = 0.0) -> BatchStatus:
        """The batch's status; with `wait` (seconds, at most 60), once it completes or when that time is
        up, whichever comes first (an older server answers at once)."""
        params = {"wait": wait} if wait > 0 else None
        status = await self._json("GET", f"/api/v1/batches/{batch_id}", params=params)
        return BatchStatus.model_validate(status)

    async def cancel_batch(self, batch_id: int) -> None:
        await self.request("PATCH", f"/api/v1/batches/{batch_id}/cancel")

    async def retry_batch(self, batch_id: int, *, token: str, which: str = "failed") -> CreateBatchResponse:
        """A new batch with the jobs of `batch_id` that failed or were cancelled (which="all": every job)."""
        body = {"token": token, "which": which}
        return CreateBatchResponse.model_validate(
            await self._json("POST", f"/api/v1/batches/{batch_id}/retry", json=body)
        )

    async def delete_batch(self, batch_id: int) -> None:
        await self.request("DELETE", f"/api/v1/batches/{batch_id}")

    # ---- jobs

    async def list_jobs(
        self,
        batch_id: int,
        *,
        state: str | None = None,
        q: str | None = None,
        last_job_id: int | None = None,
        limit: int | None = None,
    ) -> JobList:
        params = {"state": state, "q": q, "last_job_id": last_job_id, "limit": limit}
        return JobList.model_validate(
            await self._json("GET", f"/api/v1/batches/{batch_id}/jobs", params=params)
        )

    async def iter_jobs(
        self, batch_id: int, *, state: str | None = None, page_size: int = 500
    ) -> AsyncIterator[JobSummary]:
        last: int | None = None
        while True:
            page = await self.list_jobs(batch_id, state=state, last_job_id=last, limit=page_size)
            for job in page.jobs:
                yield job
            if not page.jobs or page.last_job_id is None:
                return
            last = page.last_job_id

    async def get_job(self, batch_id: int, job_id: int) -> JobStatus:
        return JobStatus.model_validate(await self._json("GET", f"/api/v1/batches/{batch_id}/jobs/{job_id}"))

    async def job_logs(self, batch_id: int, job_id: int) -> dict[str, str]:
        data = await self._json("GET", f"/api/v1/batches/{batch_id}/jobs/{job_id}/log")
        return {str(k): str(v) for k, v in dict(data).items()}

    async def job_step_log(self, batch_id: int, job_id: int, step: str) -> str:
        return (await self.request("GET", f"/api/v1/batches/{batch_id}/jobs/{job_id}/log/{step}")).text

    async def job_attempts(self, batch_id: int, job_id: int) -> list[AttemptStatus]:
        return _ATTEMPTS.validate_python(
            await self._json("GET", f"/api/v1/batches/{batch_id}/jobs/{job_id}/attempts")
        )

    # ---- users and billing projects

    async def create_user(self, name: str, *, is_admin: bool = False) -> UserCreated:
        body = {"name": name, "is_admin": is_admin}
        return UserCreated.model_validate(
            await self._json("POST", "/api/v1/users", json=body, idempotent=False)
        )

    async def create_billing_project(self, name: str, spend_limit: float | None = None) -> dict[str, Any]:
        body = {"name": name, "spend_limit": spend_limit}
        return dict(await self._json("POST", "/api/v1/billing-projects", json=body, idempotent=False))

    async def get_billing_project(self, name: str) -> BillingProjectStatus:
        found = await self._json("GET", f"/api/v1/billing-projects/{name}")
        return BillingProjectStatus.model_validate(found)

    async def remove_billing_project_user(self, billing_project: str, user: str) -> dict[str, Any]:
        return dict(await self._json("DELETE", f"/api/v1/billing-projects/{billing_project}/users/{user}"))

    async def billing_project_action(self, name: str, action: str) -> BillingProjectStatus:
        """close | reopen | delete."""
        if action == "delete":
            found = await self._json("DELETE", f"/api/v1/billing-projects/{name}")
        else:
            found = await self._json("POST", f"/api/v1/billing-projects/{name}/{action}")
        return BillingProjectStatus.model_validate(found)

    async def set_billing_limit(self, name: str, limit: float | None) -> BillingProjectStatus:
        found = await self._json("PUT", f"/api/v1/billing-projects/{name}/limit", json={"limit": limit})
        return BillingProjectStatus.model_validate(found)

    async def billing_report(
        self, by: str = "project", *, since: str | None = None, until: str | None = None,
        billing_project: str | None = None,
    ) -> BillingReport:
        params = {"by": by, "since": since, "until": until, "billing_project": billing_project}
        return BillingReport.model_validate(await self._json("GET", "/api/v1/billing/report", params=params))

    async def billing_rates(self) -> dict[str, Any]:
        return dict(await self._json("GET", "/api/v1/billing/rates"))

    async def add_billing_project_user(self, billing_project: str, user: str) -> dict[str, Any]:
        return dict(await self._json("POST", f"/api/v1/billing-projects/{billing_project}/users/{user}"))

    async def list_billing_projects(self) -> list[BillingProjectStatus]:
        return _PROJECTS.validate_python(await self._json("GET", "/api/v1/billing-projects"))

    # ---- the system: pools, instances, users

    async def list_pools(self) -> list[PoolStatus]:
        return _POOLS.validate_python(await self._json("GET", "/api/v1/pools"))

    async def get_pool(self, name: str) -> PoolStatus:
        return PoolStatus.model_validate(await self._json("GET", f"/api/v1/pools/{name}"))

    async def list_instances(self, *, pool: str | None = None, ended: int = 0) -> list[InstanceStatus]:
        params = {"pool": pool, "ended": ended or None}
        return _INSTANCES.validate_python(await self._json("GET", "/api/v1/instances", params=params))

    async def get_instance(self, name: str) -> InstanceStatus:
        return InstanceStatus.model_validate(await self._json("GET", f"/api/v1/instances/{name}"))

    async def create_instance_token(self, request: InstanceTokenRequest) -> InstanceToken:
        body = request.model_dump(mode="json", exclude_none=True)
        return InstanceToken.model_validate(
            await self._json("POST", "/api/v1/instances/tokens", json=body, idempotent=False)
        )

    async def list_users(self) -> list[UserInfo]:
        return _USERS.validate_python(await self._json("GET", "/api/v1/users"))
