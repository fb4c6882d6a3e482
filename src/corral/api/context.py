"""What every route needs, kept on app.state: settings, engine, driver hooks, the token cache."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from corral.api.hooks import DriverHooks
from corral.config import Settings
from corral.store.users import User

TOKEN_CACHE_SECONDS = 10.0


@dataclass
class TokenCache:
    """Recently seen token hashes -> user, so a polling client does not cost a query per request."""

    ttl: float = TOKEN_CACHE_SECONDS
    _entries: dict[str, tuple[User, float]] = field(default_factory=dict)

    def get(self, token_hash: str) -> User | None:
        entry = self._entries.get(token_hash)
        if entry is None:
            return None
        user, expires = entry
        if expires < time.monotonic():
            del self._entries[token_hash]
            return None
        return user

    def put(self, token_hash: str, user: User) -> None:
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[token_hash] = (user, time.monotonic() + self.ttl)

    def clear(self) -> None:
        self._entries.clear()


@dataclass
class ApiContext:
    settings: Settings
    engine: AsyncEngine
    hooks: DriverHooks
    tokens: TokenCache = field(default_factory=TokenCache)

    @asynccontextmanager
    async def reading(self) -> AsyncIterator[AsyncConnection]:
        """A read-only connection: on SQLite it reads a WAL snapshot without taking the write lock."""
        async with self.engine.connect() as conn:
            await conn.execution_options(readonly=True)
            yield conn

    def writing(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """One write transaction, committed on exit."""
        return self.engine.begin()


async def api_context(request: Request) -> ApiContext:
    # async, though it awaits nothing: FastAPI runs a plain-def dependency on a worker thread, a thread
    # hop (and its CPU) on every request.
    ctx: ApiContext = request.app.state.corral
    return ctx


Context = Annotated[ApiContext, Depends(api_context)]
