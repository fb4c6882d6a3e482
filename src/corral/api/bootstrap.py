"""First start (and every start): an admin, a default user, the billing project "default", tokens.json."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from corral.config import Settings
from corral.domain.tokens import hash_token, new_token
from corral.store import users as user_store

DEFAULT_BILLING_PROJECT = "default"


def _read_tokens(path: Path) -> dict[str, str]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, str)} if isinstance(data, dict) else {}


def _write_tokens(path: Path, tokens: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(tokens, out, indent=2)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


async def _ensure_user(
    conn: AsyncConnection, name: str, token: str | None, *, is_admin: bool, now: float
) -> str:
    """The user's token: `token` if it still matches the stored hash, else a new one (rotated)."""
    stored = await user_store.user_token_hash(conn, name)
    if stored is not None and token is not None and hash_token(token) == stored:
        if is_admin:
            await user_store.set_user_admin(conn, name, True)
        return token
    fresh = new_token()
    if stored is None:
        await user_store.create_user(conn, name, hash_token(fresh), is_admin=is_admin, now=now)
    else:
        await user_store.set_user_token_hash(conn, name, hash_token(fresh))
        if is_admin:
            await user_store.set_user_admin(conn, name, True)
    return fresh


async def bootstrap(engine: AsyncEngine, settings: Settings) -> dict[str, str]:
    """Idempotent. Returns (and writes to settings.tokens_file, mode 0600)
    {"admin_token", "user", "token"}; tokens are reused while they still match the store."""
    previous = _read_tokens(settings.tokens_file)
    now = time.time()
    admin, user = settings.admin_user, settings.default_user
    async with engine.begin() as conn:
        admin_token = await _ensure_user(conn, admin, previous.get("admin_token"), is_admin=True, now=now)
        if user == admin:
            token = admin_token
        else:
            reuse = previous.get("token") if previous.get("user") == user else None
            token = await _ensure_user(conn, user, reuse, is_admin=False, now=now)
        if await user_store.billing_project(conn, DEFAULT_BILLING_PROJECT) is None:
            await user_store.create_billing_project(conn, DEFAULT_BILLING_PROJECT, spend_limit=None, now=now)
        await user_store.add_billing_project_user(conn, DEFAULT_BILLING_PROJECT, user)
    tokens = {"admin_token": admin_token, "user": user, "token": token}
    if tokens != previous:
        _write_tokens(settings.tokens_file, tokens)
    else:
        os.chmod(settings.tokens_file, 0o600)
    return tokens


ensure_user = _ensure_user  # public: the Hail compatibility layer makes its user the same way
