"""The driver tick's own SQLite engine (store/db.py `tick_engine`): inside a transaction its statements run
on the event loop's thread (no hand-off), while a BEGIN that must wait for another writer's lock waits on
the connection's thread, the loop free meanwhile; errors and rollbacks behave as on any engine. The API's
engine runs a transaction inline only when it asks (the INLINE execution option: a small submission, a
batch's status), and can hand the rest of one to the thread (`run_inline`)."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from corral.store.db import INLINE, _inline_creator, make_engine, run_inline, tick_engine

_META = sa.MetaData()
_T = sa.Table("t", _META, sa.Column("id", sa.Integer, primary_key=True), sa.Column("v", sa.Integer))


async def _engines(tmp_path: Path) -> tuple[AsyncEngine, AsyncEngine]:
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}")
    async with engine.begin() as conn:
        await conn.run_sync(_META.create_all)
        await conn.execute(sa.insert(_T), [{"id": 1, "v": 0}])
    return engine, tick_engine(engine)


def _record_threads(threads: list[int]) -> Any:
    def install(dbapi_connection: Any, *_: Any) -> None:
        def where() -> int:
            threads.append(threading.get_ident())
            return 1

        dbapi_connection.run_async(lambda c: c.create_function("where_am_i", 0, where))

    return install


async def test_statements_in_a_transaction_run_on_the_loop_thread_and_commit(tmp_path: Path) -> None:
    engine, tick = await _engines(tmp_path)
    assert tick is not engine and tick.dialect.name == "sqlite"
    threads: list[int] = []
    sa.event.listen(tick.sync_engine, "connect", _record_threads(threads))
    try:
        async with tick.begin() as conn:
            await conn.execute(sa.text("SELECT where_am_i()"))
            await conn.execute(sa.update(_T).values(v=sa.bindparam("v")).where(_T.c.id == 1), {"v": 7})
            await conn.execute(sa.insert(_T), [{"id": 2, "v": 2}, {"id": 3, "v": 3}])
        async with engine.connect() as conn:  # another connection sees the committed rows
            rows = (await conn.execute(sa.select(_T.c.id, _T.c.v).order_by(_T.c.id))).all()
    finally:
        await tick.dispose()
        await engine.dispose()
    assert threads == [threading.get_ident()]
    assert [tuple(r) for r in rows] == [(1, 7), (2, 2), (3, 3)]


async def test_an_error_inside_rolls_back_and_the_connection_goes_on(tmp_path: Path) -> None:
    engine, tick = await _engines(tmp_path)
    try:
        with pytest.raises(sa.exc.IntegrityError):
            async with tick.begin() as conn:
                await conn.execute(sa.update(_T).values(v=99).where(_T.c.id == 1))
                await conn.execute(sa.insert(_T), [{"id": 1, "v": 1}])  # duplicate key
        async with tick.begin() as conn:
            await conn.execute(sa.insert(_T), [{"id": 4, "v": 4}])
        async with engine.connect() as conn:
            rows = (await conn.execute(sa.select(_T.c.id, _T.c.v).order_by(_T.c.id))).all()
    finally:
        await tick.dispose()
        await engine.dispose()
    assert [tuple(r) for r in rows] == [(1, 0), (4, 4)]  # the failed transaction left nothing


async def test_a_begin_behind_another_writer_waits_off_the_loop(tmp_path: Path) -> None:
    engine, tick = await _engines(tmp_path)
    async with tick.begin() as conn:  # the tick's connection exists before the lock is taken
        await conn.execute(sa.select(_T.c.id))
    holder = sqlite3.connect(tmp_path / "store.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    holder.execute("UPDATE t SET v = 5 WHERE id = 1")
    beats = 0
    done = asyncio.Event()

    async def heartbeat() -> None:
        nonlocal beats
        while not done.is_set():
            beats += 1
            await asyncio.sleep(0.01)

    async def write() -> None:
        async with tick.begin() as conn:
            await conn.execute(sa.update(_T).values(v=sa.bindparam("v")).where(_T.c.id == 1), {"v": 6})
        done.set()

    beating = asyncio.create_task(heartbeat())
    writing = asyncio.create_task(write())
    try:
        await asyncio.sleep(0.5)
        assert not writing.done()  # still waiting for the lock, not failed
        beats_while_waiting = beats
        holder.execute("COMMIT")
        await asyncio.wait_for(writing, 10)
        await beating
        async with engine.connect() as conn:
            value = (await conn.execute(sa.select(_T.c.v).where(_T.c.id == 1))).scalar_one()
    finally:
        holder.close()
        done.set()
        await tick.dispose()
        await engine.dispose()
    assert beats_while_waiting >= 10  # the loop ran while the BEGIN waited
    assert value == 6  # after the other writer's 5


async def test_postgresql_shares_the_engine() -> None:
    postgres = make_engine("postgresql://corral@127.0.0.1:1/corral")  # never connected
    try:
        assert tick_engine(postgres) is postgres
    finally:
        await postgres.dispose()



async def test_nothing_runs_inline_while_the_thread_still_has_a_call_in_hand(tmp_path: Path) -> None:
    """A call whose waiter was cancelled (a tick cancelled mid-COMMIT) still runs on the thread; what
    follows queues behind it instead of running at the same time on the loop's thread."""
    engine, tick = await _engines(tmp_path)
    await tick.dispose()
    await engine.dispose()
    conn = await _inline_creator(str(tmp_path / "store.db"), 1000)()
    ran: list[tuple[str, bool]] = []  # (statement, on the loop's thread)
    loop_thread = threading.get_ident()

    def slow() -> int:
        time.sleep(0.3)
        return 1

    try:
        await conn.create_function("slow", 0, slow)
        await conn.set_trace_callback(lambda sql: ran.append((sql, threading.get_ident() == loop_thread)))
        busy = asyncio.create_task(conn.execute("SELECT slow()"))
        await asyncio.sleep(0.05)
        busy.cancel()
        with pytest.raises(asyncio.CancelledError):
            await busy
        await conn.execute("BEGIN IMMEDIATE")  # tried inline at once, were the thread idle
        await conn.execute("UPDATE t SET v = 8 WHERE id = 1")
        await conn.commit()
    finally:
        await conn.close()
    where = {sql: inline for sql, inline in ran}
    assert where["SELECT slow()"] is False
    assert where["BEGIN IMMEDIATE"] is False  # queued behind the cancelled call, on the thread
    assert where["UPDATE t SET v = 8 WHERE id = 1"] is True  # the thread idle again: inline


async def test_the_api_engine_runs_inline_only_the_transactions_that_ask(tmp_path: Path) -> None:
    engine, tick = await _engines(tmp_path)
    await tick.dispose()
    engine = make_engine(f"sqlite:///{tmp_path / 'store.db'}", pool_size=1)  # one connection, reused
    small = engine.execution_options(**{INLINE: True})
    threads: list[int] = []
    sa.event.listen(engine.sync_engine, "connect", _record_threads(threads))
    loop_thread = threading.get_ident()
    where_am_i = sa.text("SELECT where_am_i()")
    try:
        async with engine.begin() as conn:  # not asked: on the connection's thread
            await conn.execute(where_am_i)
        async with small.begin() as conn:  # asked: inline, and it writes and commits
            await conn.execute(where_am_i)
            await conn.execute(sa.update(_T).values(v=3).where(_T.c.id == 1))
            await run_inline(conn, False)  # the rest of this one on the thread
            await conn.execute(where_am_i)
        async with engine.connect() as conn:  # a read, asked: inline; the same connection again
            await conn.execution_options(readonly=True, **{INLINE: True})
            await conn.execute(where_am_i)
            value = (await conn.execute(sa.select(_T.c.v).where(_T.c.id == 1))).scalar_one()
        async with engine.begin() as conn:  # not asked, after one that was: on the thread again
            await conn.execute(where_am_i)
    finally:
        await engine.dispose()
    on_loop = [t == loop_thread for t in threads]
    assert on_loop == [False, True, False, True, False]
    assert value == 3
