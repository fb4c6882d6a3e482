"""Fixtures and helpers shared by the API tests (imported by test_api_*.py; holds no tests itself).

The API runs in-process (httpx ASGITransport) against a migrated store on SQLite and PostgreSQL.
RecordingHooks is our own DriverHooks interface, recorded, not a mock of an external component.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from corral.api.app import create_app
from corral.api.bootstrap import bootstrap
from corral.config import Settings
from corral.store.tables import batch_updates, batches, job_parents, jobs

MAX_BODY_BYTES = 4 * 1024 * 1024


@dataclass
class RecordingHooks:
    committed: list[int] = field(default_factory=list)
    cancelled: list[int] = field(default_factory=list)

    async def batch_committed(self, batch_id: int) -> None:
        self.committed.append(batch_id)

    async def batch_cancelled(self, batch_id: int) -> None:
        self.cancelled.append(batch_id)

    def completion_of(self, batch_id: int) -> asyncio.Future[None]:
        return asyncio.get_running_loop().create_future()  # no driver here: nothing completes a batch


@dataclass
class Api:
    client: httpx.AsyncClient  # authenticated as the default user "alice"
    engine: AsyncEngine
    settings: Settings
    hooks: RecordingHooks
    tokens: dict[str, str]

    def auth(self, token: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {token}"}

    @property
    def admin(self) -> dict[str, str]:
        return self.auth(self.tokens["admin_token"])

    async def new_user(self, name: str, *, projects: tuple[str, ...] = ()) -> dict[str, str]:
        """A user (created by the admin) and its auth headers; member of `projects`."""
        r = await self.client.post("/api/v1/users", json={"name": name}, headers=self.admin)
        assert r.status_code == 200, r.text
        token = r.json()["token"]
        for project in projects:
            r = await self.client.post(f"/api/v1/billing-projects/{project}/users/{name}", headers=self.admin)
            assert r.status_code == 200, r.text
        return self.auth(token)

    async def submit(
        self, bunch: list[dict[str, Any]], *, headers: dict[str, str] | None = None, **batch: Any
    ) -> int:
        spec = {
            "billing_project": "default",
            "token": f"t-{len(self.hooks.committed)}-{id(bunch)}",
            "n_jobs": len(bunch),
            **batch,
        }
        r = await self.client.post(
            "/api/v1/batches/create-fast", json={"batch": spec, "bunch": bunch}, headers=headers
        )
        assert r.status_code == 200, r.text
        return int(r.json()["id"])


def job(job_id: int, parents: list[int] | None = None, command: str = "true", **extra: Any) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "process": {"type": "docker", "image": "ubuntu:24.04", "command": ["/bin/bash", "-c", command]},
        "in_update_parent_ids": parents or [],
        "resources": {"cpu": "0.5", "memory": "256Mi"},
        **extra,
    }


async def row_counts(engine: AsyncEngine) -> dict[str, int]:
    async with engine.connect() as conn:
        return {
            table.name: int((await conn.execute(select(func.count()).select_from(table))).scalar_one())
            for table in (batches, batch_updates, jobs, job_parents)
        }


async def job_rows(engine: AsyncEngine, batch_id: int) -> dict[int, Any]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(jobs).where(jobs.c.batch_id == batch_id))
        return {row.job_id: row for row in rows}


async def parent_links(engine: AsyncEngine, batch_id: int) -> set[tuple[int, int]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(job_parents.c.job_id, job_parents.c.parent_id).where(job_parents.c.batch_id == batch_id)
        )
        return {(r.job_id, r.parent_id) for r in rows}


@pytest.fixture(name="api")
async def api_fixture(engine: AsyncEngine, tmp_path: Path) -> AsyncIterator[Api]:
    settings = Settings(
        home=tmp_path / "home", admin_user="admin", default_user="alice", max_body_bytes=MAX_BODY_BYTES
    )
    tokens = await bootstrap(engine, settings)
    hooks = RecordingHooks()
    app = create_app(settings, engine, hooks)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport,
        base_url="http://corral.test",
        headers={"Authorization": f"Bearer {tokens['token']}"},
        timeout=120,
    ) as client:
        yield Api(client, engine, settings, hooks, tokens)
