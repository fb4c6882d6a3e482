"""What every route needs, kept on app.state: settings, engine, driver hooks, the token cache."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from functools import cached_property
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from corral.api.hooks import DriverHooks
from corral.config import Settings
from corral.store.db import INLINE
from corral.store.users import User

TOKEN_CACHE_SECONDS = 10.0
# A submission of at most this many jobs is a small transaction (see `writing`): on SQLite, inserting
# and committing them on the event loop takes a few ms, less than the thread hand-offs it saves.
SMALL_JOBS = 500


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
    async def reading(self, small: bool = False) -> AsyncIterator[AsyncConnection]:
        """A read-only connection: on SQLite it reads a WAL snapshot without taking the write lock.
        `small`: as for `writing`."""
        async with self.engine.connect() as conn:
            await conn.execution_options(readonly=True, **{INLINE: small})
            yield conn

    def writing(self, small: bool = False) -> AbstractAsyncContextManager[AsyncConnection]:
        """One write transaction, committed on exit. `small`: a few short statements whatever the store
        holds (a batch's row, a submission of at most SMALL_JOBS jobs); on SQLite they run on the event
        loop's thread instead of each being handed to the connection's thread (store/db.py)."""
        return (self._small_engine if small else self.engine).begin()

    @cached_property
    def _small_engine(self) -> AsyncEngine:
        return self.engine.execution_options(**{INLINE: True})


async def api_context(request: Request) -> ApiContext:
    # async, though it awaits nothing: FastAPI runs a plain-def dependency on a worker thread, a thread
    # hop (and its CPU) on every request.
    ctx: ApiContext = request.app.state.corral
    return ctx


Context = Annotated[ApiContext, Depends(api_context)]
