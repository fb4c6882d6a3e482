"""Bootstrap: admin, default user, billing project "default", tokens.json (0600), reused or rotated."""

from __future__ import annotations

import json
import stat
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from corral.api.bootstrap import bootstrap
from corral.config import Settings
from corral.domain.tokens import hash_token
from corral.store import users as user_store


async def test_bootstrap_is_idempotent_and_reuses_matching_tokens(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    settings = Settings(home=tmp_path, admin_user="root", default_user="alice")
    first = await bootstrap(engine, settings)
    assert first["user"] == "alice" and first["token"] != first["admin_token"]
    assert json.loads(settings.tokens_file.read_text()) == first
    assert stat.S_IMODE(settings.tokens_file.stat().st_mode) == 0o600
    assert await bootstrap(engine, settings) == first
    async with engine.connect() as conn:
        root = await user_store.user_by_token_hash(conn, hash_token(first["admin_token"]))
        alice = await user_store.user_by_token_hash(conn, hash_token(first["token"]))
        projects = await user_store.list_billing_projects(conn)
    assert root == user_store.User("root", True) and alice == user_store.User("alice", False)
    assert [(p.name, p.users) for p in projects] == [("default", ["alice"])]


async def test_bootstrap_rotates_tokens_that_no_longer_match(engine: AsyncEngine, tmp_path: Path) -> None:
    settings = Settings(home=tmp_path, admin_user="root", default_user="alice")
    first = await bootstrap(engine, settings)
    settings.tokens_file.write_text(json.dumps({**first, "token": "stale"}))
    second = await bootstrap(engine, settings)
    assert second["admin_token"] == first["admin_token"]
    assert second["token"] not in (first["token"], "stale")
    async with engine.connect() as conn:
        assert await user_store.user_by_token_hash(conn, hash_token(first["token"])) is None
        assert await user_store.user_by_token_hash(conn, hash_token(second["token"])) is not None
    settings.tokens_file.unlink()
    third = await bootstrap(engine, settings)
    assert third["token"] != second["token"] and settings.tokens_file.exists()
