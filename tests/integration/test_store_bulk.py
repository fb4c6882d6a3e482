"""Bulk job inserts (PostgreSQL COPY, SQLite executemany) on both stores: what they write reads back as the
row contract says, a duplicate id is the same InvalidInput a concurrent bunch gets, and a failed bulk
insert leaves nothing behind (the transaction is rolled back and the connection stays usable)."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from test_store_scheduling import make_batch

from corral.domain.states import JobState
from corral.errors import InvalidInput
from corral.store import batches as batch_store
from corral.store import jobs_write
from corral.store.bulk import insert_rows
from corral.store.jobs_write import NewJob
from corral.store.tables import job_parents, jobs

SPEC = {
    "command": ["sh", "-c", "echo 'it''s \"quoted\"' ; printf '\\t%s' ünïcødé 😀"],
    "image": None,
    "env": {"GREETING": "grüß dich", "EMPTY": ""},
    "timeout": 12.5,
    "input_files": [],
    "output_files": [{"from": "/io/out", "to": "file:///tmp/x y"}],
    "always_copy_output": False,
    "network": None,
}


def _job(job_id: int, *, parents: tuple[int, ...] = (), earlier: tuple[int, ...] = (),
         ready: tuple[int, ...] = ()) -> NewJob:
    return NewJob(
        job_id=job_id, path=f"bunch[{job_id}]", name=f"n{job_id}" if job_id % 2 else None, pool="default",
        cores_mcpu=250 * job_id, memory_bytes=(1 << 40) + job_id, storage_bytes=0, always_run=job_id == 3,
        n_max_attempts=7, spec={**SPEC, "n": job_id}, attributes={"k": f"v{job_id}", "ü": "ß"},
        in_update_parents=list(parents), earlier_parents=list(earlier), gpus=job_id % 2,
        gpu_type="a100" if job_id == 2 else None, ready_parents=list(ready),
    )


Records = tuple[dict[int, dict[str, object]], set[tuple[int, int, bool]]]


async def _records(engine: AsyncEngine, batch_id: int) -> Records:
    async with engine.connect() as conn:
        rows = {r.job_id: dict(r._mapping) for r in await conn.execute(
            select(jobs).where(jobs.c.batch_id == batch_id))}
        links = {(r.job_id, r.parent_id, bool(r.when_ready)) for r in await conn.execute(
            select(job_parents).where(job_parents.c.batch_id == batch_id))}
    return rows, links


async def test_bulk_inserted_jobs_read_back_as_the_row_contract_says(engine: AsyncEngine) -> None:
    batch_id = await make_batch(engine, {1: []})  # job 1: an earlier update's job, still Pending
    now = time.time()
    async with engine.begin() as conn:
        batch = await batch_store.get_batch(conn, batch_id)
        upd = await batch_store.get_update(conn, batch_id, 1)
        assert batch is not None and upd is not None
        new = [_job(2, earlier=(1,)), _job(3, parents=(2,)), _job(4, parents=(2, 3), ready=(3,))]
        assert await jobs_write.insert_jobs(conn, batch, upd, new, now) == 3
        assert await jobs_write.insert_jobs(conn, batch, upd, new, now) == 0  # a client's retry
    rows, links = await _records(engine, batch_id)
    assert sorted(rows) == [1, 2, 3, 4]
    for job in new:
        row = rows[job.job_id]
        assert row["state"] == JobState.PENDING.value
        assert row["spec"] == job.spec and row["attributes"] == job.attributes
        assert (row["name"], row["pool"], row["cores_mcpu"], row["memory_bytes"], row["gpus"],
                row["gpu_type"], bool(row["always_run"]), row["n_max_attempts"]) == (
            job.name, job.pool, job.cores_mcpu, job.memory_bytes, job.gpus, job.gpu_type, job.always_run,
            job.n_max_attempts)
        assert row["status"] is None and row["exit_code"] is None and row["time_completed"] is None
        assert (row["n_attempts"], row["msec_mcpu"], row["cost"], row["job_group_id"]) == (0, 0, 0.0, 0)
        assert row["time_created"] == pytest.approx(now)
        assert row["endpoint"] is None and row["waiting_reason"] is None
    # Pending parents: the earlier-update parent (Pending) counts, in-update parents always count.
    assert [rows[j]["n_pending_parents"] for j in (2, 3, 4)] == [1, 1, 2]
    assert not any(rows[j]["parent_failed"] for j in (2, 3, 4))
    assert links == {(2, 1, False), (3, 2, False), (4, 2, False), (4, 3, True)}


async def test_a_duplicate_in_a_bulk_insert_is_a_400_and_leaves_nothing(engine: AsyncEngine) -> None:
    batch_id = await make_batch(engine, {1: []})
    before = await _records(engine, batch_id)
    with pytest.raises(InvalidInput) as raised:
        async with engine.begin() as conn:
            batch = await batch_store.get_batch(conn, batch_id)
            upd = await batch_store.get_update(conn, batch_id, 1)
            assert batch is not None and upd is not None
            # Two rows with one id: past the "already inserted" check, refused by the primary key, as a
            # concurrent bunch with overlapping ids is.
            await jobs_write.insert_jobs(conn, batch, upd, [_job(5), _job(6), _job(5)], time.time())
    assert raised.value.field == "bunch.job_id"
    assert await _records(engine, batch_id) == before
    async with engine.begin() as conn:  # the pool's connection is usable: the failed copy was rolled back
        batch = await batch_store.get_batch(conn, batch_id)
        upd = await batch_store.get_update(conn, batch_id, 1)
        assert batch is not None and upd is not None
        assert await jobs_write.insert_jobs(conn, batch, upd, [_job(5), _job(6)], time.time()) == 2
    rows, _ = await _records(engine, batch_id)
    assert sorted(rows) == [1, 5, 6]


async def test_insert_rows_refuses_a_column_the_table_lacks(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        with pytest.raises(ValueError, match="no column"):
            await insert_rows(conn, job_parents, ("batch_id", "job_id", "parnet_id"), [(1, 2, 3)])
