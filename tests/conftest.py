"""Shared fixtures: a migrated store on SQLite and on a real PostgreSQL (started by scripts/postgres.sh)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

import transition_guard
from corral.store.db import make_engine, migrate

ROOT = Path(__file__).resolve().parents[1]
# One template per checkout, so test runs in several worktrees can share one PostgreSQL cluster.
TEMPLATE_DB = "corral_template_" + hashlib.sha256(str(ROOT).encode()).hexdigest()[:8]


def _postgres_dsn() -> str:
    """$CORRAL_TEST_PG_DSN, or the private cluster the project's own script starts."""
    dsn = os.environ.get("CORRAL_TEST_PG_DSN")
    if dsn:
        return dsn
    try:
        out = subprocess.run(
            [str(ROOT / "scripts" / "postgres.sh"), "start"], check=True, capture_output=True, text=True
        )
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL is required in CI and could not be started: {detail}")
        pytest.skip(f"PostgreSQL not available: {detail}")
    return out.stdout.strip()


def _with_db(dsn: str, name: str) -> str:
    return dsn.rsplit("/", 1)[0] + "/" + name


@pytest.fixture(scope="session")
def postgres_template() -> str:
    """A migrated template database; each test clones it (fast, isolated)."""
    dsn = _postgres_dsn()

    async def build() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {TEMPLATE_DB}")
            await conn.execute(f"CREATE DATABASE {TEMPLATE_DB}")
        finally:
            await conn.close()
        engine = make_engine(_with_db(dsn, TEMPLATE_DB))
        try:
            await migrate(engine)
        finally:
            await engine.dispose()

    asyncio.run(build())
    return dsn


async def _clone_postgres(dsn: str) -> str:
    name = f"corral_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE DATABASE {name} TEMPLATE {TEMPLATE_DB}")
    finally:
        await conn.close()
    return _with_db(dsn, name)


async def _drop_postgres(dsn: str, url: str) -> None:
    name = url.rsplit("/", 1)[1]
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def db_kind(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def db_url(db_kind: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A migrated, empty store URL: SQLite in tmp_path, or a fresh PostgreSQL database."""
    if db_kind == "sqlite":
        url = f"sqlite+aiosqlite:///{tmp_path / 'corral.db'}"

        async def build() -> None:
            engine = make_engine(url)
            try:
                await migrate(engine)
            finally:
                await engine.dispose()

        asyncio.run(build())
        yield url
        return
    dsn = request.getfixturevalue("postgres_template")
    url = asyncio.run(_clone_postgres(dsn))
    yield url
    asyncio.run(_drop_postgres(dsn, url))


@pytest.fixture
async def engine(db_url: str) -> AsyncIterator[AsyncEngine]:
    """The store, with a trigger that refuses any job move the transition table does not allow."""
    eng = make_engine(db_url)
    await transition_guard.install(eng)
    yield eng
    await eng.dispose()
