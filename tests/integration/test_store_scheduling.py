"""The driver's named queries on SQLite and PostgreSQL: attempts, completions, cascade, cancel, retry."""

from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from corral.domain.states import JobState
from corral.store import scheduling as q
from corral.store.job_moves import move_jobs
from corral.store.tables import attempts, batch_updates, batches, billing_projects, job_parents, jobs


async def make_batch(
    engine: AsyncEngine,
    parents: dict[int, list[int]],
    *,
    always_run: set[int] = frozenset(),  # type: ignore[assignment]
    n_max_attempts: int = 3,
    cancel_after_n_failures: int | None = None,
) -> int:
    """A committed batch whose jobs 1..n have the given parents (the API's job-row contract)."""
    now = time.time()
    async with engine.begin() as conn:
        if (await conn.execute(select(billing_projects.c.name))).first() is None:
            await conn.execute(
                billing_projects.insert().values(name="default", status="open", time_created=now)
            )
        batch_id = (
            await conn.execute(
                batches.insert().values(
                    user="alice",
                    billing_project="default",
                    token=f"t{now}",
                    attributes={},
                    state="running",
                    closed=True,
                    cancelled=False,
                    deleted=False,
                    n_jobs=len(parents),
                    n_completed=0,
                    n_succeeded=0,
                    n_failed=0,
                    n_cancelled=0,
                    msec_mcpu=0,
                    cost=0.0,
                    time_created=now,
                    cancel_after_n_failures=cancel_after_n_failures,
                )
            )
        ).inserted_primary_key[0]
        await conn.execute(
            batch_updates.insert().values(
                batch_id=batch_id,
                update_id=1,
                token="u",
                n_jobs=len(parents),
                start_job_id=1,
                committed=True,
                time_created=now,
            )
        )
        await conn.execute(
            jobs.insert(),
            [
                {
                    "batch_id": batch_id,
                    "job_id": j,
                    "update_id": 1,
                    "user": "alice",
                    "name": f"j{j}",
                    "state": JobState.PENDING,
                    "pool": "default",
                    "cores_mcpu": 1000,
                    "memory_bytes": 1 << 20,
                    "storage_bytes": 0,
                    "always_run": j in always_run,
                    "n_max_attempts": n_max_attempts,
                    "n_attempts": 0,
                    "n_pending_parents": len(ps),
                    "parent_failed": False,
                    "spec": {"command": ["true"]},
                    "attributes": {},
                    "msec_mcpu": 0,
                    "cost": 0.0,
                    "time_created": now,
                }
                for j, ps in parents.items()
            ],
        )
        links = [{"batch_id": batch_id, "job_id": j, "parent_id": p} for j, ps in parents.items() for p in ps]
        if links:
            await conn.execute(job_parents.insert(), links)
        # As committing an update does: jobs without parents become Ready.
        parentless = [jobs.c.batch_id == batch_id, jobs.c.n_pending_parents == 0]
        await move_jobs(conn, JobState.READY, where=parentless)
    return int(batch_id)


async def states(engine: AsyncEngine, batch_id: int) -> dict[int, str]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(jobs.c.job_id, jobs.c.state).where(jobs.c.batch_id == batch_id))
        return {r.job_id: r.state for r in rows}


async def batch_row(engine: AsyncEngine, batch_id: int):  # type: ignore[no-untyped-def]
    async with engine.connect() as conn:
        return (await conn.execute(select(batches).where(batches.c.id == batch_id))).one()


async def run(engine: AsyncEngine, batch_id: int, job_id: int, outcome: JobState) -> q.CascadeResult:
    """Start the job (Ready -> Running) and end its attempt with `outcome`."""
    async with engine.begin() as conn:
        ready = {r.job.key: r.job for r in await q.load_ready_jobs(conn, batch_id)}
        job = ready[(batch_id, job_id)]
        specs = await q.start_attempts(conn, [(job, "inst-1")], time.time())
        assert (batch_id, job_id) in specs
    async with engine.begin() as conn:
        reason = {JobState.SUCCESS: "success", JobState.FAILED: "failed", JobState.READY: "lost"}[outcome]
        return await q.end_attempts(
            conn,
            [
                q.AttemptOutcome(
                    batch_id, job_id, job.n_attempts + 1, outcome, reason, time.time(), exit_code=0
                )
            ],
            time.time(),
        )


async def test_children_become_ready_only_when_every_parent_succeeded(engine: AsyncEngine) -> None:
    b = await make_batch(engine, {1: [], 2: [1], 3: [1], 4: [2, 3]})
    result = await run(engine, b, 1, JobState.SUCCESS)
    assert sorted(r.job.job_id for r in result.ready) == [2, 3]
    await run(engine, b, 2, JobState.SUCCESS)
    assert (await states(engine, b))[4] == JobState.PENDING
    result = await run(engine, b, 3, JobState.SUCCESS)
    assert [r.job.job_id for r in result.ready] == [4]
    await run(engine, b, 4, JobState.SUCCESS)
    row = await batch_row(engine, b)
    assert (row.n_completed, row.n_succeeded, row.state) == (4, 4, "success")
    assert row.time_completed is not None


async def test_failure_cancels_descendants_but_always_run_child_runs(engine: AsyncEngine) -> None:
    b = await make_batch(engine, {1: [], 2: [1], 3: [2], 4: [1]}, always_run={4})
    result = await run(engine, b, 1, JobState.FAILED)
    assert [r.job.job_id for r in result.ready] == [4]
    st = await states(engine, b)
    assert st == {1: "Failed", 2: "Cancelled", 3: "Cancelled", 4: "Ready"}
    row = await batch_row(engine, b)
    assert (row.n_completed, row.n_failed, row.n_cancelled, row.state) == (3, 1, 2, "failure")


async def test_duplicate_completion_report_changes_nothing(engine: AsyncEngine) -> None:
    b = await make_batch(engine, {1: []})
    await run(engine, b, 1, JobState.SUCCESS)
    async with engine.begin() as conn:
        again = await q.end_attempts(
            conn, [q.AttemptOutcome(b, 1, 1, JobState.FAILED, "failed", time.time())], time.time()
        )
    assert again.ended == []
    row = await batch_row(engine, b)
    assert (row.n_completed, row.n_succeeded, row.n_failed) == (1, 1, 0)


async def test_lost_attempt_is_retried_until_n_max_attempts_then_error(engine: AsyncEngine) -> None:
    b = await make_batch(engine, {1: []}, n_max_attempts=2)
    first = await run(engine, b, 1, JobState.READY)
    assert [r.job.n_attempts for r in first.requeued] == [1]
    assert (await states(engine, b))[1] == "Ready"
    second = await run(engine, b, 1, JobState.READY)
    assert second.requeued == []
    assert (await states(engine, b))[1] == "Error"
    async with engine.connect() as conn:
        reasons = [
            r.end_reason
            for r in await conn.execute(
                select(attempts.c.end_reason).where(attempts.c.batch_id == b).order_by(attempts.c.attempt_id)
            )
        ]
    assert reasons == ["lost", "lost"]


async def test_cancel_batch_keeps_always_run_jobs_and_kills_running(engine: AsyncEngine) -> None:
    b = await make_batch(engine, {1: [], 2: [], 3: [1, 2]}, always_run={3})
    async with engine.begin() as conn:
        ready = {r.job.key: r.job for r in await q.load_ready_jobs(conn, b)}
        await q.start_attempts(conn, [(ready[(b, 1)], "inst-1")], time.time())
    async with engine.begin() as conn:
        await conn.execute(
            batches.update().where(batches.c.id == b).values(cancelled=True, state="cancelled")
        )
        result = await q.cancel_batch_jobs(conn, b, time.time())
    assert [(k[1], k[3]) for k in result.killed] == [(1, "inst-1")]
    assert [r.job.job_id for r in result.cascade.ready] == [3]
    assert await states(engine, b) == {1: "Cancelled", 2: "Cancelled", 3: "Ready"}
    # A late completion report of the killed attempt changes nothing.
    async with engine.begin() as conn:
        late = await q.end_attempts(
            conn, [q.AttemptOutcome(b, 1, 1, JobState.SUCCESS, "success", time.time())], time.time()
        )
    assert late.ended == []
    row = await batch_row(engine, b)
    assert (row.n_completed, row.n_cancelled, row.state) == (2, 2, "cancelled")


async def test_cancel_after_n_failures_asks_for_a_cancel(engine: AsyncEngine) -> None:
    b = await make_batch(engine, {1: [], 2: [], 3: []}, cancel_after_n_failures=1)
    result = await run(engine, b, 1, JobState.FAILED)
    assert result.batches_to_cancel == [b]
    assert (await batch_row(engine, b)).cancelled


async def test_a_stale_placement_starts_nothing_and_the_others_in_its_tick_start(engine: AsyncEngine) -> None:
    """Placements the store no longer allows (queued with an older attempt count: the job is Ready or
    Running again since) are skipped: no attempt row and no spec for them; the tick's others start."""
    b = await make_batch(engine, {1: [], 2: [], 3: []})
    async with engine.begin() as conn:
        ready = {r.job.key: r.job for r in await q.load_ready_jobs(conn, b)}
    await run(engine, b, 1, JobState.READY)  # job 1's attempt 1 was lost: Ready again with 1 attempt
    await run(engine, b, 2, JobState.READY)
    async with engine.begin() as conn:  # job 2 runs its attempt 2
        again = {r.job.key: r.job for r in await q.load_ready_jobs(conn, b)}
        assert await q.start_attempts(conn, [(again[(b, 2)], "inst-1")], time.time())
    async with engine.begin() as conn:
        placements = [(ready[(b, 1)], "inst-1"), (ready[(b, 2)], "inst-1"), (ready[(b, 3)], "inst-2")]
        specs = await q.start_attempts(conn, placements, time.time())
    assert set(specs) == {(b, 3)} and "storage_bytes" in specs[(b, 3)]
    async with engine.connect() as conn:
        rows = await conn.execute(select(attempts.c.job_id, attempts.c.attempt_id, attempts.c.instance_name)
                                  .where(attempts.c.batch_id == b).order_by(attempts.c.job_id))
        assert [tuple(r) for r in rows] == [(1, 1, "inst-1"), (2, 1, "inst-1"), (2, 2, "inst-1"),
                                            (3, 1, "inst-2")]
    assert await states(engine, b) == {1: "Ready", 2: "Running", 3: "Running"}
