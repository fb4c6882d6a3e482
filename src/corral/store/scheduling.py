"""Named queries of the driver: start attempts, end them (with the child cascade), cancel, rebuild.

The driver's single writer loop calls these inside one transaction per tick (group commit). Every job
update is conditional on the state the driver expects, so a stale or duplicate report changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, bindparam, exists, func, literal_column, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.domain.batches import BatchCounts, CountDelta, batch_state
from corral.domain.scheduling import ReadyJob
from corral.domain.states import COMPLETE_STATES, BatchState, JobState
from corral.store.tables import attempts, batch_updates, batches, job_parents, jobs

JobKey = tuple[int, int]
CHUNK = 2000
_INCOMPLETE = [JobState.PENDING, JobState.READY, JobState.CREATING, JobState.RUNNING]
_NOT_SUCCESS = [JobState.FAILED, JobState.ERROR, JobState.CANCELLED]


def _state_in(column: Any, states: Iterable[JobState]) -> Any:
    """`column IN ('A', 'B')` with inlined constants: expanding parameters cannot be used in executemany."""
    return column.in_([literal_column(f"'{JobState(state).value}'") for state in states])


def _chunks(keys: Iterable[JobKey]) -> Iterable[tuple[int, list[int]]]:
    """Group job keys by batch and cut them into IN-lists of bounded size."""
    by_batch: dict[int, list[int]] = defaultdict(list)
    for batch_id, job_id in keys:
        by_batch[batch_id].append(job_id)
    for batch_id, ids in by_batch.items():
        for i in range(0, len(ids), CHUNK):
            yield batch_id, ids[i : i + CHUNK]


@dataclass(frozen=True, slots=True)
class QueuedJob:
    job: ReadyJob
    pool: str
    always_run: bool
    doomed: bool  # parent failed or batch cancelled: to be cancelled, not run (unless always_run)


@dataclass(frozen=True, slots=True)
class RunningAttempt:
    batch_id: int
    job_id: int
    attempt_id: int
    instance_name: str
    user: str
    pool: str
    cores_mcpu: int
    memory_bytes: int
    storage_bytes: int
    spec: dict[str, Any]
    time_assigned: float
    time_started: float | None
    gpus: int = 0

    @property
    def key(self) -> str:
        return f"{self.batch_id}.{self.job_id}.{self.attempt_id}"


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """How an attempt ended. job_state READY means 'lost': retry if attempts remain."""

    batch_id: int
    job_id: int
    attempt_id: int
    job_state: JobState
    end_reason: str
    time_ended: float
    exit_code: int | None = None
    status: dict[str, Any] | None = None
    msec_mcpu: int = 0
    cost: float = 0.0


@dataclass
class CascadeResult:
    ready: list[QueuedJob] = field(default_factory=list)  # jobs that became Ready (queue them)
    requeued: list[QueuedJob] = field(default_factory=list)  # lost attempts to retry
    ended: list[AttemptOutcome] = field(default_factory=list)  # outcomes actually applied
    batches_to_cancel: list[int] = field(default_factory=list)  # cancel_after_n_failures reached
    completed_batches: list[int] = field(default_factory=list)

    def merge(self, other: CascadeResult) -> None:
        self.ready.extend(other.ready)
        self.requeued.extend(other.requeued)
        self.ended.extend(other.ended)
        self.batches_to_cancel.extend(other.batches_to_cancel)
        self.completed_batches.extend(other.completed_batches)


# ---------------------------------------------------------------- rebuild at start


def _queued_job_query() -> Any:
    doomed = and_(
        jobs.c.always_run.is_(False),
        (jobs.c.parent_failed.is_(True)) | (batches.c.cancelled.is_(True)),
    )
    return select(
        jobs.c.batch_id, jobs.c.job_id, jobs.c.user, jobs.c.cores_mcpu, jobs.c.memory_bytes,
        jobs.c.n_attempts, jobs.c.pool, jobs.c.always_run, doomed.label("doomed"), jobs.c.gpus,
        jobs.c.gpu_type,
    ).join(batches, batches.c.id == jobs.c.batch_id)


def _queued(row: Any) -> QueuedJob:
    job = ReadyJob(row.batch_id, row.job_id, row.user, row.cores_mcpu, row.memory_bytes, row.n_attempts,
                   row.gpus, row.gpu_type)
    return QueuedJob(job, row.pool, bool(row.always_run), bool(row.doomed))


async def load_ready_jobs(conn: AsyncConnection, batch_id: int | None = None) -> list[QueuedJob]:
    query = _queued_job_query().where(jobs.c.state == JobState.READY)
    if batch_id is not None:
        query = query.where(jobs.c.batch_id == batch_id)
    result = await conn.execute(query.order_by(jobs.c.batch_id, jobs.c.job_id))
    return [_queued(row) for row in result]


async def load_running_attempts(conn: AsyncConnection) -> list[RunningAttempt]:
    query = select(
        attempts.c.batch_id, attempts.c.job_id, attempts.c.attempt_id, attempts.c.instance_name,
        jobs.c.user, jobs.c.pool, attempts.c.cores_mcpu, attempts.c.memory_bytes, jobs.c.storage_bytes,
        jobs.c.spec, attempts.c.time_assigned, attempts.c.time_started, jobs.c.gpus,
    ).join(jobs, and_(jobs.c.batch_id == attempts.c.batch_id, jobs.c.job_id == attempts.c.job_id)).where(
        attempts.c.state == "running"
    )
    return [RunningAttempt(*tuple(row)) for row in await conn.execute(query)]


async def cancelled_batches_with_work(conn: AsyncConnection) -> list[int]:
    """Cancelled batches that still have cancellable jobs (a cancel interrupted by a crash)."""
    query = (
        select(batches.c.id)
        .where(batches.c.cancelled.is_(True))
        .where(
            exists().where(
                jobs.c.batch_id == batches.c.id,
                jobs.c.state.in_(_INCOMPLETE),
                jobs.c.always_run.is_(False),
            )
        )
    )
    return [row.id for row in await conn.execute(query)]


# ---------------------------------------------------------------- starting attempts


async def start_attempts(
    conn: AsyncConnection, placements: Sequence[tuple[ReadyJob, str]], now: float
) -> dict[JobKey, dict[str, Any]]:
    """Ready -> Running with a new attempt on the chosen instance.

    Returns the spec of each job really started, with its storage_bytes added.
    """
    if not placements:
        return {}
    params = [
        {"b": job.batch_id, "j": job.job_id, "prev": job.n_attempts, "next": job.n_attempts + 1}
        for job, _ in placements
    ]
    stmt = (
        update(jobs)
        .where(jobs.c.batch_id == bindparam("b"), jobs.c.job_id == bindparam("j"))
        .where(jobs.c.state == JobState.READY, jobs.c.n_attempts == bindparam("prev"))
        .values(state=JobState.RUNNING, n_attempts=bindparam("next"))
    )
    result = await conn.execute(stmt, params)
    started = list(placements)
    if result.rowcount != len(params):
        started = await _verify_started(conn, placements)
    await conn.execute(
        attempts.insert(),
        [
            {
                "batch_id": job.batch_id, "job_id": job.job_id, "attempt_id": job.n_attempts + 1,
                "instance_name": instance, "cores_mcpu": job.cores_mcpu, "memory_bytes": job.memory_bytes,
                "state": "running", "time_assigned": now,
            }
            for job, instance in started
        ],
    ) if started else None
    specs: dict[JobKey, dict[str, Any]] = {}
    for batch_id, ids in _chunks(job.key for job, _ in started):
        rows = await conn.execute(
            select(jobs.c.job_id, jobs.c.spec, jobs.c.storage_bytes).where(
                jobs.c.batch_id == batch_id, jobs.c.job_id.in_(ids)
            )
        )
        for row in rows:
            specs[(batch_id, row.job_id)] = {**row.spec, "storage_bytes": row.storage_bytes}
    return specs


async def _verify_started(
    conn: AsyncConnection, placements: Sequence[tuple[ReadyJob, str]]
) -> list[tuple[ReadyJob, str]]:
    """Which of the placements the conditional update really moved (the rest were stale)."""
    wanted = {job.key: (job, inst) for job, inst in placements}
    ok: list[tuple[ReadyJob, str]] = []
    for batch_id, ids in _chunks(wanted):
        rows = await conn.execute(
            select(jobs.c.job_id, jobs.c.state, jobs.c.n_attempts).where(
                jobs.c.batch_id == batch_id, jobs.c.job_id.in_(ids)
            )
        )
        for row in rows:
            job, inst = wanted[(batch_id, row.job_id)]
            if row.state == JobState.RUNNING and row.n_attempts == job.n_attempts + 1:
                ok.append((job, inst))
    return ok


async def mark_started(conn: AsyncConnection, started: Sequence[tuple[int, int, int, float]]) -> None:
    if not started:
        return
    stmt = (
        update(attempts)
        .where(
            attempts.c.batch_id == bindparam("b"), attempts.c.job_id == bindparam("j"),
            attempts.c.attempt_id == bindparam("a"), attempts.c.state == "running",
        )
        .values(time_started=bindparam("t"))
    )
    await conn.execute(stmt, [{"b": b, "j": j, "a": a, "t": t} for b, j, a, t in started])


# ---------------------------------------------------------------- ending attempts


async def end_attempts(
    conn: AsyncConnection, outcomes: Sequence[AttemptOutcome], now: float
) -> CascadeResult:
    """Apply attempt outcomes: end the attempts, complete or requeue their jobs, cascade to children."""
    result = CascadeResult()
    if not outcomes:
        return result
    wanted = {(o.batch_id, o.job_id): o for o in outcomes}
    current: dict[JobKey, Any] = {}
    for batch_id, ids in _chunks(wanted):
        rows = await conn.execute(
            _queued_job_query()
            .add_columns(jobs.c.state, jobs.c.n_max_attempts)
            .where(jobs.c.batch_id == batch_id, jobs.c.job_id.in_(ids))
        )
        for row in rows:
            current[(batch_id, row.job_id)] = row
    valid = [
        o for key, o in wanted.items()
        if key in current
        and current[key].state in (JobState.RUNNING, JobState.CREATING)
        and current[key].n_attempts == o.attempt_id
    ]
    if not valid:
        return result
    await conn.execute(
        update(attempts)
        .where(
            attempts.c.batch_id == bindparam("b"), attempts.c.job_id == bindparam("j"),
            attempts.c.attempt_id == bindparam("a"), attempts.c.state == "running",
        )
        .values(
            state="ended", end_reason=bindparam("reason"), exit_code=bindparam("code"),
            status=bindparam("st"), time_ended=bindparam("t"),
        ),
        [
            {"b": o.batch_id, "j": o.job_id, "a": o.attempt_id, "reason": o.end_reason,
             "code": o.exit_code, "st": o.status, "t": o.time_ended}
            for o in valid
        ],
    )
    result.ended.extend(valid)
    terminal: list[AttemptOutcome] = []
    retry: list[AttemptOutcome] = []
    for o in valid:
        if o.job_state is JobState.READY:
            row = current[(o.batch_id, o.job_id)]
            if row.n_attempts < row.n_max_attempts:
                retry.append(o)
            else:
                status = dict(o.status or {})
                status.setdefault(
                    "error", f"attempt {o.attempt_id} was {o.end_reason}; no attempts left "
                    f"(n_max_attempts={row.n_max_attempts})"
                )
                terminal.append(
                    AttemptOutcome(o.batch_id, o.job_id, o.attempt_id, JobState.ERROR, o.end_reason,
                                   o.time_ended, o.exit_code, status, o.msec_mcpu, o.cost)
                )
        else:
            terminal.append(o)
    if retry:
        await conn.execute(
            update(jobs)
            .where(jobs.c.batch_id == bindparam("b"), jobs.c.job_id == bindparam("j"))
            .where(_state_in(jobs.c.state, [JobState.RUNNING, JobState.CREATING]))
            .values(state=JobState.READY, status=bindparam("st")),
            [{"b": o.batch_id, "j": o.job_id, "st": o.status} for o in retry],
        )
        for o in retry:
            queued = _queued(current[(o.batch_id, o.job_id)])
            result.requeued.append(queued)
    if terminal:
        await conn.execute(
            update(jobs)
            .where(jobs.c.batch_id == bindparam("b"), jobs.c.job_id == bindparam("j"))
            .where(_state_in(jobs.c.state, [JobState.RUNNING, JobState.CREATING]))
            .values(
                state=bindparam("s"), exit_code=bindparam("code"), status=bindparam("st"),
                time_completed=bindparam("t"), msec_mcpu=jobs.c.msec_mcpu + bindparam("ms"),
                cost=jobs.c.cost + bindparam("c"),
            ),
            [
                {"b": o.batch_id, "j": o.job_id, "s": o.job_state, "code": o.exit_code,
                 "st": o.status, "t": o.time_ended, "ms": o.msec_mcpu, "c": o.cost}
                for o in terminal
            ],
        )
    # Lost attempts that are retried still used cores: charge them to the job and batch.
    charged = [o for o in retry if o.msec_mcpu or o.cost]
    if charged:
        await conn.execute(
            update(jobs)
            .where(jobs.c.batch_id == bindparam("b"), jobs.c.job_id == bindparam("j"))
            .values(msec_mcpu=jobs.c.msec_mcpu + bindparam("ms"), cost=jobs.c.cost + bindparam("c")),
            [{"b": o.batch_id, "j": o.job_id, "ms": o.msec_mcpu, "c": o.cost} for o in charged],
        )
    usage: dict[int, tuple[int, float]] = defaultdict(lambda: (0, 0.0))
    for o in valid:
        ms, cost = usage[o.batch_id]
        usage[o.batch_id] = (ms + o.msec_mcpu, cost + o.cost)
    completed = [(o.batch_id, o.job_id, o.job_state) for o in terminal]
    result.merge(await complete_jobs(conn, completed, now, usage=usage))
    return result


async def complete_jobs(
    conn: AsyncConnection,
    completed: Sequence[tuple[int, int, JobState]],
    now: float,
    *,
    usage: dict[int, tuple[int, float]] | None = None,
) -> CascadeResult:
    """Jobs that just reached a complete state: count them, then make children Ready or cancel them.

    Children are recounted from their parents' states (idempotent, unlike decrements); a child whose
    parent did not succeed is cancelled unless always_run; cancellations cascade level by level.
    """
    result = CascadeResult()
    deltas: dict[int, CountDelta] = defaultdict(CountDelta)
    level = list(completed)
    done: set[JobKey] = set()
    while level:
        for batch_id, job_id, state in level:
            deltas[batch_id].add(state)
            done.add((batch_id, job_id))
        children = await _children_of(conn, [(b, j) for b, j, _ in level])
        children -= done
        level = []
        if not children:
            break
        await _recount_parents(conn, children)
        new_ready: list[QueuedJob] = []
        for queued in await _newly_ready(conn, children):
            if queued.doomed and not queued.always_run:
                level.append((queued.job.batch_id, queued.job.job_id, JobState.CANCELLED))
            else:
                new_ready.append(queued)
        if new_ready:
            await conn.execute(
                update(jobs)
                .where(jobs.c.batch_id == bindparam("b"), jobs.c.job_id == bindparam("j"))
                .where(jobs.c.state == JobState.PENDING)
                .values(state=JobState.READY),
                [{"b": q.job.batch_id, "j": q.job.job_id} for q in new_ready],
            )
            done.update(q.job.key for q in new_ready)
            result.ready.extend(new_ready)
        if level:
            await conn.execute(
                update(jobs)
                .where(jobs.c.batch_id == bindparam("b"), jobs.c.job_id == bindparam("j"))
                .where(jobs.c.state == JobState.PENDING)
                .values(state=JobState.CANCELLED, time_completed=now),
                [{"b": b, "j": j} for b, j, _ in level],
            )
    await _apply_batch_deltas(conn, deltas, usage or {}, now, result)
    return result


async def _children_of(conn: AsyncConnection, parents: Sequence[JobKey]) -> set[JobKey]:
    children: set[JobKey] = set()
    for batch_id, ids in _chunks(parents):
        rows = await conn.execute(
            select(job_parents.c.job_id).where(
                job_parents.c.batch_id == batch_id, job_parents.c.parent_id.in_(ids)
            ).distinct()
        )
        children.update((batch_id, row.job_id) for row in rows)
    return children


async def _recount_parents(conn: AsyncConnection, children: set[JobKey]) -> None:
    parent = jobs.alias("parent")
    link = job_parents.alias("link")

    def parents_in(states: list[JobState], *, serving_done: bool = False) -> Any:
        query = (
            select(func.count())
            .select_from(link.join(parent, and_(parent.c.batch_id == link.c.batch_id,
                                                parent.c.job_id == link.c.parent_id)))
            .where(link.c.batch_id == jobs.c.batch_id, link.c.job_id == jobs.c.job_id)
            .where(_state_in(parent.c.state, states))
        )
        if serving_done:  # a service waited on `when="ready"` no longer holds its child once it serves
            query = query.where(~and_(link.c.when_ready.is_(True), parent.c.time_serving.is_not(None)))
        return query.scalar_subquery()

    await conn.execute(
        update(jobs)
        .where(jobs.c.batch_id == bindparam("b"), jobs.c.job_id == bindparam("j"))
        .where(jobs.c.state == JobState.PENDING)
        .values(
            n_pending_parents=parents_in(_INCOMPLETE, serving_done=True),
            parent_failed=jobs.c.parent_failed | (parents_in(_NOT_SUCCESS) > 0),
        ),
        [{"b": b, "j": j} for b, j in children],
    )


async def _newly_ready(conn: AsyncConnection, children: set[JobKey]) -> list[QueuedJob]:
    """Children now without pending parents, in committed updates (others wait for their commit)."""
    ready: list[QueuedJob] = []
    for batch_id, ids in _chunks(children):
        rows = await conn.execute(
            _queued_job_query()
            .join(
                batch_updates,
                and_(batch_updates.c.batch_id == jobs.c.batch_id,
                     batch_updates.c.update_id == jobs.c.update_id),
            )
            .where(jobs.c.batch_id == batch_id, jobs.c.job_id.in_(ids))
            .where(jobs.c.state == JobState.PENDING, jobs.c.n_pending_parents == 0)
            .where(batch_updates.c.committed.is_(True))
        )
        ready.extend(_queued(row) for row in rows)
    return ready


async def _apply_batch_deltas(
    conn: AsyncConnection,
    deltas: dict[int, CountDelta],
    usage: dict[int, tuple[int, float]],
    now: float,
    result: CascadeResult,
) -> None:
    touched = sorted(set(deltas) | set(usage))
    if not touched:
        return
    await conn.execute(
        update(batches)
        .where(batches.c.id == bindparam("b"))
        .values(
            n_completed=batches.c.n_completed + bindparam("dc"),
            n_succeeded=batches.c.n_succeeded + bindparam("ds"),
            n_failed=batches.c.n_failed + bindparam("df"),
            n_cancelled=batches.c.n_cancelled + bindparam("dx"),
            msec_mcpu=batches.c.msec_mcpu + bindparam("ms"),
            cost=batches.c.cost + bindparam("c"),
        ),
        [
            {"b": b, "dc": deltas[b].n_completed, "ds": deltas[b].n_succeeded, "df": deltas[b].n_failed,
             "dx": deltas[b].n_cancelled, "ms": usage.get(b, (0, 0.0))[0], "c": usage.get(b, (0, 0.0))[1]}
            for b in touched
        ],
    )
    await refresh_batch_states(conn, touched, now, result)


async def refresh_batch_states(
    conn: AsyncConnection, batch_ids: Sequence[int], now: float, result: CascadeResult | None = None
) -> None:
    """Recompute state (and completion time) of batches from their counters; note auto-cancels."""
    rows = await conn.execute(select(batches).where(batches.c.id.in_(list(batch_ids))))
    changes = []
    for row in rows:
        counts = BatchCounts(row.n_jobs, row.n_completed, row.n_succeeded, row.n_failed, row.n_cancelled)
        limit = row.cancel_after_n_failures
        auto_cancel = (
            limit is not None and row.n_failed >= limit and not row.cancelled and not counts.complete
        )
        cancelled = bool(row.cancelled) or auto_cancel
        state = batch_state(counts, closed=bool(row.closed), cancelled=cancelled)
        complete = bool(row.closed) and counts.complete
        time_completed = row.time_completed or (now if complete else None)
        if state != row.state or time_completed != row.time_completed or auto_cancel:
            changes.append({"b": row.id, "s": state, "t": time_completed, "x": cancelled})
        if result is not None:
            if auto_cancel:
                result.batches_to_cancel.append(row.id)
            if complete and row.time_completed is None:
                result.completed_batches.append(row.id)
    if changes:
        await conn.execute(
            update(batches)
            .where(batches.c.id == bindparam("b"))
            .values(state=bindparam("s"), time_completed=bindparam("t"), cancelled=bindparam("x")),
            changes,
        )


# ---------------------------------------------------------------- cancellation


@dataclass
class CancelResult:
    cascade: CascadeResult
    killed: list[tuple[int, int, int, str]]  # (batch, job, attempt, instance) attempts to kill


async def cancel_batch_jobs(
    conn: AsyncConnection, batch_id: int, now: float, *, job_group_ids: Collection[int] | None = None
) -> CancelResult:
    """Cancel every unfinished job of a committed update of the batch that is not always_run
    (only those of the given job groups, when given)."""
    query = (
        select(jobs.c.job_id, jobs.c.state, jobs.c.n_attempts)
        .join(batch_updates, and_(batch_updates.c.batch_id == jobs.c.batch_id,
                                  batch_updates.c.update_id == jobs.c.update_id))
        .where(jobs.c.batch_id == batch_id, jobs.c.state.in_(_INCOMPLETE))
        .where(jobs.c.always_run.is_(False), batch_updates.c.committed.is_(True))
    )
    if job_group_ids is not None:
        query = query.where(jobs.c.job_group_id.in_(sorted(job_group_ids)))
    rows = list(await conn.execute(query))
    killed: list[tuple[int, int, int, str]] = []
    active = [r for r in rows if r.state in (JobState.RUNNING, JobState.CREATING)]
    if active:
        found = await conn.execute(
            select(attempts.c.job_id, attempts.c.attempt_id, attempts.c.instance_name).where(
                attempts.c.batch_id == batch_id,
                attempts.c.job_id.in_([r.job_id for r in active]),
                attempts.c.state == "running",
            )
        )
        killed = [(batch_id, a.job_id, a.attempt_id, a.instance_name) for a in found]
        if killed:
            await conn.execute(
                update(attempts)
                .where(attempts.c.batch_id == bindparam("b"), attempts.c.job_id == bindparam("j"),
                       attempts.c.attempt_id == bindparam("a"), attempts.c.state == "running")
                .values(state="ended", end_reason="cancelled", time_ended=now),
                [{"b": b, "j": j, "a": a} for b, j, a, _ in killed],
            )
    if rows:
        await conn.execute(
            update(jobs)
            .where(jobs.c.batch_id == batch_id, jobs.c.job_id == bindparam("j"))
            .where(_state_in(jobs.c.state, _INCOMPLETE))
            .values(state=JobState.CANCELLED, time_completed=now),
            [{"j": r.job_id} for r in rows],
        )
    cascade = await complete_jobs(conn, [(batch_id, r.job_id, JobState.CANCELLED) for r in rows], now)
    if not rows:
        await refresh_batch_states(conn, [batch_id], now, cascade)
    return CancelResult(cascade, killed)


async def cancel_ready_jobs(conn: AsyncConnection, keys: Sequence[JobKey], now: float) -> CascadeResult:
    """Ready jobs that must not run (parent failed, batch cancelled): Cancelled, with the cascade."""
    if not keys:
        return CascadeResult()
    await conn.execute(
        update(jobs)
        .where(jobs.c.batch_id == bindparam("b"), jobs.c.job_id == bindparam("j"))
        .where(jobs.c.state == JobState.READY)
        .values(state=JobState.CANCELLED, time_completed=now),
        [{"b": b, "j": j} for b, j in keys],
    )
    return await complete_jobs(conn, [(b, j, JobState.CANCELLED) for b, j in keys], now)


def is_complete(state: str) -> bool:
    return JobState(state) in COMPLETE_STATES


__all__ = [
    "AttemptOutcome", "BatchState", "CancelResult", "CascadeResult", "QueuedJob", "RunningAttempt",
    "cancel_batch_jobs", "cancel_ready_jobs", "cancelled_batches_with_work", "complete_jobs",
    "end_attempts", "load_ready_jobs", "load_running_attempts", "mark_started", "refresh_batch_states",
    "start_attempts",
]
