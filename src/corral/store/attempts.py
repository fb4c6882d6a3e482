"""Named queries of attempts: start them (Ready -> Running), note their start, end them with the cascade."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.domain.attempts import RETURNED, after_lost_attempt
from corral.domain.scheduling import ReadyJob
from corral.domain.states import JobState
from corral.store.cascade import complete_jobs
from corral.store.driver_records import AttemptOutcome, CascadeResult
from corral.store.job_moves import JobKey, JobMove, chunks
from corral.store.rebuild import queued, queued_job_query
from corral.store.tables import attempts, jobs

# Built once (the tick runs them every few milliseconds; see store.job_moves.JobMove).
_START = JobMove(
    JobState.RUNNING, only_from={JobState.READY}, where=[jobs.c.n_attempts == bindparam("prev")],
    values={"n_attempts": bindparam("next"), "waiting_reason": None},
)
_INSERT_ATTEMPTS = attempts.insert()
_SPECS = select(jobs.c.job_id, jobs.c.spec, jobs.c.storage_bytes, jobs.c.state, jobs.c.n_attempts).where(
    jobs.c.batch_id == bindparam("b"), jobs.c.job_id.in_(bindparam("ids", expanding=True))
)
_ATTEMPT_RUNNING = (
    attempts.c.batch_id == bindparam("b"), attempts.c.job_id == bindparam("j"),
    attempts.c.attempt_id == bindparam("a"), attempts.c.state == "running",
)
_MARK_STARTED = update(attempts).where(*_ATTEMPT_RUNNING).values(time_started=bindparam("t"))
_CURRENT = (
    queued_job_query().add_columns(jobs.c.state, jobs.c.n_max_attempts)
    .where(jobs.c.batch_id == bindparam("b"), jobs.c.job_id.in_(bindparam("ids", expanding=True)))
)
_RETURNED_COUNTS = (
    select(attempts.c.job_id, func.count().label("n"))
    .where(attempts.c.batch_id == bindparam("b"), attempts.c.job_id.in_(bindparam("ids", expanding=True)),
           attempts.c.end_reason == RETURNED)
    .group_by(attempts.c.job_id)
)
# An outcome's start time, if it carries one, is written with its end (the tick then skips _MARK_STARTED).
_END = update(attempts).where(*_ATTEMPT_RUNNING).values(
    state="ended", end_reason=bindparam("reason"), exit_code=bindparam("code"), status=bindparam("st"),
    time_ended=bindparam("t"),
    time_started=func.coalesce(bindparam("s", type_=attempts.c.time_started.type), attempts.c.time_started),
)
# Lost attempts that are retried still used cores: charged to the job as they go back to Ready.
_REQUEUE = JobMove(
    JobState.READY, only_from={JobState.RUNNING},
    values={"status": bindparam("st"), "msec_mcpu": jobs.c.msec_mcpu + bindparam("ms"),
            "cost": jobs.c.cost + bindparam("c")},
)
_FINISH: dict[JobState, JobMove] = {}


def _finish(state: JobState) -> JobMove:
    """Running -> a complete state, with the attempt's exit code, status and usage (built once per state)."""
    move = _FINISH.get(state)
    if move is None:
        move = _FINISH[state] = JobMove(
            state, only_from={JobState.RUNNING},
            values={"exit_code": bindparam("code"), "status": bindparam("st"),
                    "time_completed": bindparam("t"), "msec_mcpu": jobs.c.msec_mcpu + bindparam("ms"),
                    "cost": jobs.c.cost + bindparam("c")},
        )
    return move


async def start_attempts(
    conn: AsyncConnection, placements: Sequence[tuple[ReadyJob, str]], now: float
) -> dict[JobKey, dict[str, Any]]:
    """Ready -> Running with a new attempt on the chosen instance.

    Returns the spec of each job really started, with its storage_bytes added. The conditional update
    skips stale placements; one read after it gives both which jobs it moved (when the driver cannot count
    an executemany's rows, as asyncpg) and their specs.
    """
    if not placements:
        return {}
    params = [
        {"b": job.batch_id, "j": job.job_id, "prev": job.n_attempts, "next": job.n_attempts + 1}
        for job, _ in placements
    ]
    moved = await _START.run(conn, params)
    wanted = {job.key: (job, inst) for job, inst in placements}
    started: list[tuple[ReadyJob, str]] = []
    specs: dict[JobKey, dict[str, Any]] = {}
    for batch_id, ids in chunks(wanted):
        for row in await conn.execute(_SPECS, {"b": batch_id, "ids": ids}):
            job, inst = wanted[(batch_id, row.job_id)]
            if moved != len(params) and not (
                row.state == JobState.RUNNING and row.n_attempts == job.n_attempts + 1
            ):
                continue  # stale: the update did not move it
            started.append((job, inst))
            specs[job.key] = {**row.spec, "storage_bytes": row.storage_bytes}
    if started:
        await conn.execute(
            _INSERT_ATTEMPTS,
            [
                {
                    "batch_id": job.batch_id, "job_id": job.job_id, "attempt_id": job.n_attempts + 1,
                    "instance_name": instance, "cores_mcpu": job.cores_mcpu, "memory_bytes": job.memory_bytes,
                    "state": "running", "time_assigned": now,
                }
                for job, instance in started
            ],
        )
    return specs


async def mark_started(conn: AsyncConnection, started: Sequence[tuple[int, int, int, float]]) -> None:
    if not started:
        return
    await conn.execute(_MARK_STARTED, [{"b": b, "j": j, "a": a, "t": t} for b, j, a, t in started])


async def end_attempts(
    conn: AsyncConnection, outcomes: Sequence[AttemptOutcome], now: float
) -> CascadeResult:
    """Apply attempt outcomes: end the attempts, complete or requeue their jobs, cascade to children."""
    result = CascadeResult()
    if not outcomes:
        return result
    wanted = {(o.batch_id, o.job_id): o for o in outcomes}
    current: dict[JobKey, Any] = {}
    for batch_id, ids in chunks(wanted):
        rows = await conn.execute(_CURRENT, {"b": batch_id, "ids": ids})
        for row in rows:
            current[(batch_id, row.job_id)] = row
    valid = [
        o for key, o in wanted.items()
        if key in current
        and current[key].state == JobState.RUNNING
        and current[key].n_attempts == o.attempt_id
    ]
    if not valid:
        return result
    await conn.execute(
        _END,
        [
            {"b": o.batch_id, "j": o.job_id, "a": o.attempt_id, "reason": o.end_reason,
             "code": o.exit_code, "st": o.status, "t": o.time_ended, "s": o.time_started}
            for o in valid
        ],
    )
    result.ended.extend(valid)
    terminal: list[AttemptOutcome] = []
    retry: list[AttemptOutcome] = []
    lost = [(o.batch_id, o.job_id) for o in valid
            if o.job_state is JobState.READY and o.end_reason != RETURNED]
    returned = await _returned_counts(conn, lost) if lost else {}
    for o in valid:
        if o.job_state is not JobState.READY:
            terminal.append(o)
            continue
        row = current[(o.batch_id, o.job_id)]
        counted = row.n_attempts - returned.get((o.batch_id, o.job_id), 0)
        decision = after_lost_attempt(o.attempt_id, o.end_reason, counted, row.n_max_attempts)
        if decision.job_state is JobState.READY:
            retry.append(o)
        else:
            status = dict(o.status or {})
            status.setdefault("error", decision.error)
            terminal.append(
                AttemptOutcome(o.batch_id, o.job_id, o.attempt_id, decision.job_state, o.end_reason,
                               o.time_ended, o.exit_code, status, o.msec_mcpu, o.cost, o.time_started)
            )
    await _REQUEUE.run(conn, [{"b": o.batch_id, "j": o.job_id, "st": o.status, "ms": o.msec_mcpu,
                               "c": o.cost} for o in retry])
    result.requeued.extend(queued(current[(o.batch_id, o.job_id)]) for o in retry)
    for state in sorted({o.job_state for o in terminal}):
        await _finish(state).run(
            conn,
            [{"b": o.batch_id, "j": o.job_id, "code": o.exit_code, "st": o.status, "t": o.time_ended,
              "ms": o.msec_mcpu, "c": o.cost} for o in terminal if o.job_state is state],
        )
    usage: dict[int, tuple[int, float]] = defaultdict(lambda: (0, 0.0))
    for o in valid:
        ms, cost = usage[o.batch_id]
        usage[o.batch_id] = (ms + o.msec_mcpu, cost + o.cost)
    completed = [(o.batch_id, o.job_id, o.job_state) for o in terminal]
    result.merge(await complete_jobs(conn, completed, now, usage=usage))
    return result


async def _returned_counts(conn: AsyncConnection, keys: Sequence[JobKey]) -> dict[JobKey, int]:
    """Attempts of these jobs their workers gave back (not counted against n_max_attempts): read only for
    jobs whose attempt was lost, which is rare."""
    counts: dict[JobKey, int] = {}
    for batch_id, ids in chunks(keys):
        for row in await conn.execute(_RETURNED_COUNTS, {"b": batch_id, "ids": ids}):
            counts[(batch_id, int(row.job_id))] = int(row.n)
    return counts
