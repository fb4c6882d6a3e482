"""Engines for SQLite (WAL, the embedded default) and PostgreSQL, and running migrations."""

from __future__ import annotations

import functools
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiosqlite
import orjson
from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

MIGRATIONS_DIR = Path(__file__).parent / "migrations"


def normalise_url(url: str) -> str:
    """Accept plain 'postgresql://' and 'sqlite:///' URLs and pick the async drivers."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///"):]
    return url


def json_column_text(value: Any) -> str:
    """What a JSON column stores: orjson's text (as the bulk inserts write it; SQLAlchemy's default,
    `json.dumps`, was ~5 % of the driver's CPU a short job), the standard library's for what orjson
    refuses (integers beyond 64 bits, non-string keys), so everything that was storable still is. Read
    back with `json.loads` (orjson would read a big integer as a float). A float NaN or infinity is stored
    as `null`, on both stores (`json.dumps` wrote `NaN`, which SQLite kept and PostgreSQL refused); the API
    refuses them in what users send, so only a bug of ours could store one."""
    try:
        return orjson.dumps(value).decode()
    except TypeError:  # orjson.JSONEncodeError is one
        return json.dumps(value)


BUSY_TIMEOUT_MS = 30_000  # a writer waits this long for the write lock, then the API answers 503


def _sqlite_pragmas(dbapi_connection: Any, _record: Any, busy_timeout_ms: int = BUSY_TIMEOUT_MS) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    # NORMAL in WAL mode: durable against process crashes (what we promise), fsync at checkpoints.
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA cache_size=-65536")
    cursor.execute("PRAGMA temp_store=MEMORY")
    cursor.close()


INLINE = "inline"  # execution option: this transaction's statements run on the event loop's thread


def _sqlite_begin(conn: Any) -> None:
    # Take the write lock at BEGIN so writers queue (busy_timeout) instead of failing on a lock upgrade;
    # pure readers opt out with execution_options(readonly=True) and read a WAL snapshot without waiting.
    options = conn.get_execution_options()
    driver = conn.connection.driver_connection
    if isinstance(driver, _InlineInTransaction):
        driver.inline = options.get(INLINE, driver.inline_by_default)
    conn.exec_driver_sql("BEGIN" if options.get("readonly", False) else "BEGIN IMMEDIATE")


class _InlineInTransaction(aiosqlite.Connection):
    """An aiosqlite connection that runs what cannot wait on the event loop's own thread, instead of
    handing it to the connection's thread and waiting for the answer.

    For the driver's tick: many small statements inside one BEGIN IMMEDIATE, where a statement handed
    over costs ~0.3 ms of CPU in thread hand-offs (cursor, execute, fetch, close) and SQLite itself needs
    microseconds. Inside the transaction nothing waits on another connection (the write lock is held and
    a WAL reader never blocks a writer), so everything runs inline but COMMIT, which can checkpoint the
    WAL (file I/O) and stays on the thread. BEGIN IMMEDIATE is tried inline without waiting; if another
    writer holds the lock it is handed to the thread, which waits up to busy_timeout as before.

    Never both threads at once: a call runs inline only while the connection's thread has nothing of
    ours in hand (a COMMIT whose waiter was cancelled still runs there; a ROLLBACK must queue behind it).
    Each counter is written by one thread only.

    Per transaction: `inline` is set at each BEGIN from the INLINE execution option (default
    `inline_by_default`: True for the tick's engine; the API's engine runs inline only the small,
    bounded transactions that ask for it, e.g. a submission of a few hundred jobs or a batch's status,
    and everything else, a listing or a 100,000-job commit, on the thread as aiosqlite does)."""

    busy_timeout_ms = BUSY_TIMEOUT_MS
    inline_by_default = True
    inline = True
    _handed = 0  # calls given to the thread (written by the loop's thread)
    _returned = 0  # of those, calls the thread has finished (written by the connection's thread)

    async def _execute(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        conn = self._connection
        if conn is None or not self._running or not self.inline or self._handed != self._returned:
            return await self._on_thread(fn, *args, **kwargs)
        if conn.in_transaction:
            if fn == conn.commit:
                return await self._on_thread(fn, *args, **kwargs)
            return fn(*args, **kwargs)
        if fn == conn.cursor or fn == conn.rollback or _is_cursor_close(fn):
            return fn(*args, **kwargs)  # no statement runs: nothing to wait for
        if args and isinstance(args[0], str) and args[0].startswith("BEGIN"):
            try:
                return self._begin_without_waiting(fn, *args, **kwargs)
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
        return await self._on_thread(fn, *args, **kwargs)

    async def _on_thread(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        def counted() -> Any:
            try:
                return fn(*args, **kwargs)
            finally:
                self._returned += 1

        if not self._running or self._connection is None:
            raise ValueError("Connection closed")  # as aiosqlite says it, before anything is handed over
        self._handed += 1
        return await super()._execute(counted)  # type: ignore[no-untyped-call]

    def _begin_without_waiting(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        conn = self._conn
        conn.execute("PRAGMA busy_timeout=0")
        try:
            return fn(*args, **kwargs)
        finally:
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")


async def run_inline(conn: AsyncConnection, inline: bool) -> None:
    """From now until the transaction ends, run `conn`'s statements inline or not (SQLite in a file; a
    no-op elsewhere): a transaction begun small that finds it has a large part ahead (a batch of 100,000
    jobs to count) hands that part to the connection's thread."""
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    if isinstance(driver, _InlineInTransaction):
        driver.inline = inline


def _is_cursor_close(fn: Callable[..., Any]) -> bool:
    owner = getattr(fn, "__self__", None)
    return isinstance(owner, sqlite3.Cursor) and getattr(fn, "__name__", "") == "close"


def _inline_creator(path: str, busy_timeout_ms: int, inline_by_default: bool = True) -> Callable[[], Any]:
    async def connect() -> aiosqlite.Connection:
        # check_same_thread off: the connection is used by its thread and by the loop's thread, never
        # both at once (_InlineInTransaction runs nothing inline while its thread has a call in hand).
        connection = _InlineInTransaction(
            functools.partial(sqlite3.connect, path, check_same_thread=False, isolation_level=None), 64
        )
        connection._thread.daemon = True
        connection.busy_timeout_ms = busy_timeout_ms
        connection.inline_by_default = connection.inline = inline_by_default
        return await connection

    return connect


def _database_file(url: URL) -> str | None:
    """The file a SQLite URL names; None for an in-memory or URI-form database."""
    path = url.database
    if not path or path == ":memory:" or path.startswith("file:"):
        return None
    return path


def make_engine(
    url: str, *, pool_size: int = 10, busy_timeout_ms: int = BUSY_TIMEOUT_MS, inline_writes: bool = False
) -> AsyncEngine:
    """`inline_writes` (SQLite on a file): statements inside every transaction run on the loop's thread
    (see _InlineInTransaction); for the driver's tick, whose transactions are many small statements. A
    long statement there holds the loop for its duration. Without it, only transactions that ask (the
    INLINE execution option) run inline."""
    url = normalise_url(url)
    if url.startswith("sqlite"):
        path = _database_file(make_url(url))
        if path is not None:
            engine = create_async_engine(url, pool_size=pool_size, max_overflow=4,
                                         async_creator=_inline_creator(path, busy_timeout_ms, inline_writes),
                                         json_serializer=json_column_text)
        else:
            engine = create_async_engine(url, pool_size=pool_size, max_overflow=4,
                                         json_serializer=json_column_text)
        event.listen(engine.sync_engine, "connect",
                     lambda conn, record: _sqlite_pragmas(conn, record, busy_timeout_ms))
        event.listen(engine.sync_engine, "begin", _sqlite_begin)

        @event.listens_for(engine.sync_engine, "connect")
        def _no_pysqlite_begin(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None

        return engine
    return create_async_engine(url, pool_size=pool_size, max_overflow=10, pool_pre_ping=True,
                               json_serializer=json_column_text)


def tick_engine(engine: AsyncEngine) -> AsyncEngine:
    """The engine of the driver's tick: on SQLite in a file, its own (inline writes, one connection);
    anything else (PostgreSQL: asyncpg answers without thread hand-offs) shares `engine`."""
    if engine.dialect.name != "sqlite" or _database_file(engine.url) is None:
        return engine
    return make_engine(engine.url.render_as_string(hide_password=False), pool_size=1, inline_writes=True)


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


async def migrate(engine: AsyncEngine, revision: str = "heads") -> None:
    """Bring the schema to `revision` (default: every head); an up-to-date store is untouched."""

    def upgrade(connection: Connection) -> None:
        command.upgrade(alembic_config(connection), revision)

    async with engine.begin() as conn:
        await conn.run_sync(upgrade)
