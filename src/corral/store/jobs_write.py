"""Named queries that write jobs: insert a bunch of an update, commit an update (Pending -> Ready).

The job-row contract the driver relies on: jobs are inserted Pending; n_pending_parents counts parents
not yet complete (in-update parents always count); parent_failed says a complete parent did not succeed.
Committing an update recounts jobs with parents in earlier updates and makes the parentless ones Ready.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Boolean, and_, bindparam, func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.domain.batches import BatchCounts, batch_state
from corral.domain.dag import find_cycle
from corral.domain.states import COMPLETE_STATES, INCOMPLETE_STATES, NOT_SUCCESS_STATES, JobState
from corral.errors import InvalidInput
from corral.store.batches import BatchRecord, UpdateRecord
from corral.store.bulk import insert_rows
from corral.store.db import json_column_text
from corral.store.job_moves import move_jobs
from corral.store.services import join_earlier_services
from corral.store.tables import batch_updates, batches, job_parents, jobs

CHUNK = 2000


@dataclass(slots=True)
class NewJob:
    """One job row to insert, already validated; ids are absolute."""

    job_id: int
    path: str  # where the job is in the request, e.g. "bunch[3]", for error messages
    name: str | None
    pool: str
    cores_mcpu: int
    memory_bytes: int
    storage_bytes: int
    always_run: bool
    n_max_attempts: int
    spec: dict[str, Any]
    attributes: dict[str, str]
    in_update_parents: list[int] = field(default_factory=list)  # absolute ids inside the same update
    gpus: int = 0
    gpu_type: str | None = None
    earlier_parents: list[int] = field(default_factory=list)  # absolute ids of earlier updates
    job_group_id: int = 0  # absolute; 0 is the batch's root job group
    ready_parents: list[int] = field(default_factory=list)  # parents waited on until they serve


# The columns a new job row sets, in the order insert_jobs builds its tuples (the rest take defaults).
_JOB_COLUMNS = (
    "batch_id", "job_id", "update_id", "user", "name", "state", "pool", "cores_mcpu", "memory_bytes",
    "storage_bytes", "gpus", "gpu_type", "always_run", "n_max_attempts", "n_attempts", "n_pending_parents",
    "parent_failed", "spec", "attributes", "exit_code", "status", "msec_mcpu", "cost", "time_created",
    "time_completed", "job_group_id",
)
_LINK_COLUMNS = ("batch_id", "job_id", "parent_id", "when_ready")
_JSON_NULL = json_column_text(None)  # `status` starts as JSON null, as SQLAlchemy's JSON type stored None
_EMPTY_OBJECT = json_column_text({})  # most jobs have no attributes


def _chunks(ids: Sequence[int]) -> Iterable[list[int]]:
    for i in range(0, len(ids), CHUNK):
        yield list(ids[i : i + CHUNK])


async def existing_job_ids(conn: AsyncConnection, batch_id: int, low: int, high: int) -> set[int]:
    rows = await conn.execute(
        select(jobs.c.job_id).where(jobs.c.batch_id == batch_id, jobs.c.job_id.between(low, high))
    )
    return {row.job_id for row in rows}


async def job_states(conn: AsyncConnection, batch_id: int, job_ids: Sequence[int]) -> dict[int, JobState]:
    found: dict[int, JobState] = {}
    for ids in _chunks(sorted(set(job_ids))):
        rows = await conn.execute(
            select(jobs.c.job_id, jobs.c.state).where(jobs.c.batch_id == batch_id, jobs.c.job_id.in_(ids))
        )
        found.update((row.job_id, JobState(row.state)) for row in rows)
    return found


async def insert_jobs(
    conn: AsyncConnection, batch: BatchRecord, upd: UpdateRecord, new_jobs: Sequence[NewJob], now: float
) -> int:
    """Insert a bunch of the update. Returns how many rows were inserted: 0 when exactly this bunch was
    inserted before (a client retry). Raises InvalidInput, before writing, for ids already taken or
    earlier-update parents that do not exist."""
    if not new_jobs:
        return 0
    ids = [j.job_id for j in new_jobs]
    taken = await existing_job_ids(conn, batch.id, min(ids), max(ids))
    if taken:
        if all(job_id in taken for job_id in ids):
            return 0
        dup = next(j for j in new_jobs if j.job_id in taken)
        in_update = dup.job_id - upd.start_job_id + 1
        raise InvalidInput(
            f"{dup.path}.job_id: job {in_update} of update {upd.update_id} was already inserted by an "
            "earlier bunch; send each job once",
            field=f"{dup.path}.job_id",
        )
    earlier = [p for j in new_jobs for p in j.earlier_parents]
    states = await job_states(conn, batch.id, earlier) if earlier else {}
    rows: list[tuple[Any, ...]] = []
    links: list[tuple[int, int, int, bool]] = []
    pending_state = JobState.PENDING.value
    for job in new_jobs:
        pending = len(job.in_update_parents)
        failed = False
        for parent in job.earlier_parents:
            state = states.get(parent)
            if state is None:
                raise InvalidInput(
                    f"{job.path}.absolute_parent_ids: job {parent} does not exist in batch {batch.id}; "
                    "absolute parent ids must name jobs of earlier updates",
                    field=f"{job.path}.absolute_parent_ids",
                )
            if state in COMPLETE_STATES:
                failed = failed or state is not JobState.SUCCESS
            else:
                pending += 1
        rows.append((
            batch.id, job.job_id, upd.update_id, batch.user, job.name, pending_state, job.pool,
            job.cores_mcpu, job.memory_bytes, job.storage_bytes, job.gpus, job.gpu_type, job.always_run,
            job.n_max_attempts, 0, pending, failed, json_column_text(job.spec),
            json_column_text(job.attributes) if job.attributes else _EMPTY_OBJECT,
            None, _JSON_NULL, 0, 0.0, now, None, job.job_group_id,
        ))
        if job.in_update_parents or job.earlier_parents:
            ready = job.ready_parents
            links.extend(
                (batch.id, job.job_id, p, p in ready) for p in (*job.in_update_parents, *job.earlier_parents)
            )
    try:
        await insert_rows(conn, jobs, _JOB_COLUMNS, rows)
        await insert_rows(conn, job_parents, _LINK_COLUMNS, links)
    except IntegrityError:
        # Another bunch with overlapping ids won the race; this transaction is rolled back.
        raise InvalidInput(
            "bunch: some of these job ids were inserted by a concurrent bunch; send each job once",
            field="bunch.job_id",
        ) from None
    return len(rows)


async def count_update_jobs(conn: AsyncConnection, batch_id: int, update_id: int) -> int:
    return int(
        (
            await conn.execute(
                select(func.count())
                .select_from(jobs)
                .where(jobs.c.batch_id == batch_id, jobs.c.update_id == update_id)
            )
        ).scalar_one()
    )


async def _check_update_acyclic(conn: AsyncConnection, upd: UpdateRecord) -> None:
    """Bunches are checked alone; edges across bunches can still close a cycle. Cheap when every in-update
    parent has a lower id than its child (then no cycle is possible)."""
    in_update = and_(
        job_parents.c.batch_id == upd.batch_id,
        job_parents.c.job_id.between(upd.start_job_id, upd.end_job_id),
        job_parents.c.parent_id >= upd.start_job_id,
    )
    backwards = await conn.execute(
        select(job_parents.c.job_id).where(in_update, job_parents.c.parent_id > job_parents.c.job_id).limit(1)
    )
    if backwards.first() is None:
        return
    graph: dict[int, list[int]] = {}
    for row in await conn.execute(select(job_parents.c.job_id, job_parents.c.parent_id).where(in_update)):
        graph.setdefault(row.job_id - upd.start_job_id + 1, []).append(row.parent_id - upd.start_job_id + 1)
    cycle = find_cycle(graph)
    if cycle:
        path = " -> ".join(str(j) for j in cycle)
        raise InvalidInput(
            f"bunch.in_update_parent_ids: the jobs of update {upd.update_id} form a cycle ({path}); "
            "a job cannot depend on its own descendants",
            field="bunch.in_update_parent_ids",
        )


async def _recount_earlier_parents(conn: AsyncConnection, upd: UpdateRecord) -> None:
    """Parents in earlier updates may have completed since the bunch was inserted: count again.

    Their rows are locked first (PostgreSQL) so the driver cannot complete one between the recount and
    our commit without seeing this update committed. Linear in the update's parent links: the links are
    read by primary-key range and the parents by primary key (a correlated count per child let SQLite
    scan every incomplete job of the batch once per child).
    """
    links = await conn.execute(
        select(job_parents.c.job_id, job_parents.c.parent_id).where(
            job_parents.c.batch_id == upd.batch_id,
            job_parents.c.job_id.between(upd.start_job_id, upd.end_job_id),
        )
    )
    parents_of: dict[int, list[int]] = {}
    earlier: set[int] = set()
    for link in links:
        parents_of.setdefault(link.job_id, []).append(link.parent_id)
        if link.parent_id < upd.start_job_id:
            earlier.add(link.parent_id)
    if not earlier:
        return
    state_of: dict[int, str] = {}
    for ids in _chunks(sorted(earlier)):
        rows = await conn.execute(
            select(jobs.c.job_id, jobs.c.state)
            .where(jobs.c.batch_id == upd.batch_id, jobs.c.job_id.in_(ids))
            .with_for_update()
        )
        state_of.update((row.job_id, row.state) for row in rows)
    recount = []
    for job_id, parents in parents_of.items():
        if not any(p < upd.start_job_id for p in parents):
            continue
        # In-update parents are all Pending at commit: they count as incomplete.
        states = [JobState(state_of[p]) if p < upd.start_job_id else JobState.PENDING for p in parents]
        recount.append({
            "b": upd.batch_id, "j": job_id,
            "n": sum(s in INCOMPLETE_STATES for s in states),
            "f": any(s in NOT_SUCCESS_STATES for s in states),
        })
    for i in range(0, len(recount), CHUNK):
        await conn.execute(
            update(jobs)
            .where(jobs.c.batch_id == bindparam("b"), jobs.c.job_id == bindparam("j"))
            .where(jobs.c.state == JobState.PENDING)
            .values(n_pending_parents=bindparam("n"),
                    parent_failed=jobs.c.parent_failed | bindparam("f", type_=Boolean)),
            recount[i : i + CHUNK],
        )


@dataclass(frozen=True, slots=True)
class CommitResult:
    update: UpdateRecord
    newly_committed: bool  # False: it was committed before (an idempotent repeat)


async def commit_update(
    conn: AsyncConnection, batch: BatchRecord, upd: UpdateRecord, now: float
) -> CommitResult:
    """Commit an update whose jobs are all inserted; the caller holds the batch row lock.

    Marks it committed, adds its jobs to the batch, closes the batch, recounts parents in earlier
    updates and makes the update's jobs without pending parents Ready.
    """
    if upd.committed:
        return CommitResult(upd, False)
    inserted = await count_update_jobs(conn, batch.id, upd.update_id)
    if inserted < upd.n_jobs:
        missing = upd.n_jobs - inserted
        raise InvalidInput(
            f"n_jobs: update {upd.update_id} declared {upd.n_jobs} jobs but {inserted} were inserted; "
            f"{missing} job(s) are missing: send them with jobs/create before committing",
            field="n_jobs",
        )
    if upd.n_jobs:
        await _check_update_acyclic(conn, upd)
        await _recount_earlier_parents(conn, upd)
        # Jobs waiting for services of earlier updates that already serve (or have ended).
        await join_earlier_services(conn, upd.batch_id, upd.start_job_id, upd.end_job_id)
        await move_jobs(
            conn, JobState.READY, only_from={JobState.PENDING},
            where=[jobs.c.batch_id == batch.id, jobs.c.update_id == upd.update_id,
                   jobs.c.n_pending_parents <= 0],
        )
    await conn.execute(
        update(batch_updates)
        .where(batch_updates.c.batch_id == batch.id, batch_updates.c.update_id == upd.update_id)
        .values(committed=True, time_committed=now)
    )
    n_jobs = batch.n_jobs + upd.n_jobs
    counts = BatchCounts(n_jobs, batch.n_completed, batch.n_succeeded, batch.n_failed, batch.n_cancelled)
    time_completed = (batch.time_completed or now) if counts.complete else None
    await conn.execute(
        update(batches)
        .where(batches.c.id == batch.id)
        .values(
            n_jobs=n_jobs,
            closed=True,
            time_closed=batch.time_closed or now,
            time_completed=time_completed,
            state=batch_state(counts, closed=True, cancelled=batch.cancelled),
        )
    )
    return CommitResult(upd, True)
