"""Invariants the store must hold whatever happened (crashes, retries, races), checked by reading it.

Hail's driver checks its own counters the same way. Each check returns violations in words; an empty
list means the store is consistent. Used by `corral admin check` and after every acceptance scenario.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.domain.states import COMPLETE_STATES, FAILURE_STATES, JobState
from corral.store.job_moves import state_in
from corral.store.tables import attempts, batch_updates, batches, instances, job_parents, jobs

LIMIT = 20  # violations reported per check: enough to see the pattern


@dataclass(frozen=True, slots=True)
class Violation:
    check: str
    detail: str

    def __str__(self) -> str:
        return f"{self.check}: {self.detail}"


async def check_store(conn: AsyncConnection) -> list[Violation]:
    found: list[Violation] = []
    found += await _batch_counters(conn)
    found += await _running_jobs_have_one_running_attempt(conn)
    found += await _no_attempt_running_on_a_gone_instance(conn)
    found += await _parents_complete_before_children_start(conn)
    found += await _ready_jobs_have_no_pending_parents(conn)
    return found


async def _batch_counters(conn: AsyncConnection) -> list[Violation]:
    """A batch's counters equal the states of its committed jobs."""
    rows = await conn.execute(
        select(jobs.c.batch_id, jobs.c.state, func.count().label("n"))
        .join(batch_updates, and_(batch_updates.c.batch_id == jobs.c.batch_id,
                                  batch_updates.c.update_id == jobs.c.update_id))
        .where(batch_updates.c.committed.is_(True))
        .group_by(jobs.c.batch_id, jobs.c.state)
    )
    by_state: dict[int, dict[str, int]] = defaultdict(dict)
    for row in rows:
        by_state[row.batch_id][row.state] = int(row.n)
    out: list[Violation] = []
    for b in await conn.execute(select(batches)):
        states = by_state.get(b.id, {})
        expected = {
            "n_jobs": sum(states.values()),
            "n_completed": sum(n for s, n in states.items() if JobState(s) in COMPLETE_STATES),
            "n_succeeded": states.get(JobState.SUCCESS, 0),
            "n_failed": sum(n for s, n in states.items() if JobState(s) in FAILURE_STATES),
            "n_cancelled": states.get(JobState.CANCELLED, 0),
        }
        for name, value in expected.items():
            if getattr(b, name) != value:
                out.append(Violation("batch counters", f"batch {b.id}: {name} is {getattr(b, name)} but its "
                                     f"jobs say {value}"))
        if b.closed and (b.time_completed is not None) != (expected["n_completed"] == expected["n_jobs"]):
            out.append(Violation("batch counters", f"batch {b.id}: completion time {b.time_completed} with "
                                 f"{expected['n_completed']}/{expected['n_jobs']} jobs complete"))
    return out[:LIMIT]


async def _running_jobs_have_one_running_attempt(conn: AsyncConnection) -> list[Violation]:
    """A Running job has exactly one running attempt, its latest; no other job has one."""
    running = (
        select(attempts.c.batch_id, attempts.c.job_id, func.count().label("n"),
               func.max(attempts.c.attempt_id).label("latest"))
        .where(attempts.c.state == "running")
        .group_by(attempts.c.batch_id, attempts.c.job_id)
        .subquery()
    )
    rows = await conn.execute(
        select(jobs.c.batch_id, jobs.c.job_id, jobs.c.state, jobs.c.n_attempts, running.c.n, running.c.latest)
        .select_from(jobs.outerjoin(running, and_(running.c.batch_id == jobs.c.batch_id,
                                                  running.c.job_id == jobs.c.job_id)))
        .where((jobs.c.state == JobState.RUNNING) | running.c.n.is_not(None))
        .limit(100_000)
    )
    out = []
    for r in rows:
        key = f"job {r.batch_id}.{r.job_id} ({r.state})"
        if r.state != JobState.RUNNING:
            out.append(Violation("attempts", f"{key} has {r.n} running attempt(s)"))
        elif r.n != 1 or r.latest != r.n_attempts:
            out.append(Violation("attempts", f"{key} has {r.n or 0} running attempt(s), latest "
                                 f"{r.latest}, n_attempts {r.n_attempts}"))
        if len(out) >= LIMIT:
            break
    return out


async def _no_attempt_running_on_a_gone_instance(conn: AsyncConnection) -> list[Violation]:
    rows = await conn.execute(
        select(attempts.c.batch_id, attempts.c.job_id, attempts.c.attempt_id, attempts.c.instance_name,
               instances.c.state)
        .select_from(attempts.outerjoin(instances, instances.c.name == attempts.c.instance_name))
        .where(attempts.c.state == "running")
        .where(instances.c.state.is_(None) | instances.c.state.in_(["inactive", "deleted"]))
        .limit(LIMIT)
    )
    return [
        Violation("instances", f"attempt {r.batch_id}.{r.job_id}.{r.attempt_id} is running on instance "
                  f"{r.instance_name}, which is {r.state or 'unknown'}")
        for r in rows
    ]


async def _parents_complete_before_children_start(conn: AsyncConnection) -> list[Violation]:
    """No attempt was assigned before every parent of its job had completed (a service's dependents
    that wait for it to be ready, not complete, are the exception: `when_ready` links)."""
    parent = jobs.alias("parent")
    rows = await conn.execute(
        select(attempts.c.batch_id, attempts.c.job_id, attempts.c.attempt_id, parent.c.job_id.label("p"),
               parent.c.state)
        .select_from(
            attempts.join(job_parents, and_(job_parents.c.batch_id == attempts.c.batch_id,
                                            job_parents.c.job_id == attempts.c.job_id))
            .join(parent, and_(parent.c.batch_id == job_parents.c.batch_id,
                               parent.c.job_id == job_parents.c.parent_id))
        )
        .where(~state_in(parent.c.state, COMPLETE_STATES)
               | (parent.c.time_completed > attempts.c.time_assigned + 1e-3))
        .where(job_parents.c.when_ready.is_(False))
        .limit(LIMIT)
    )
    return [
        Violation("dependencies", f"attempt {r.batch_id}.{r.job_id}.{r.attempt_id} started before its "
                  f"parent {r.p} completed (parent is {r.state})")
        for r in rows
    ]


async def _ready_jobs_have_no_pending_parents(conn: AsyncConnection) -> list[Violation]:
    rows = await conn.execute(
        select(jobs.c.batch_id, jobs.c.job_id, jobs.c.n_pending_parents)
        .where(jobs.c.state == JobState.READY, jobs.c.n_pending_parents > 0)
        .limit(LIMIT)
    )
    return [
        Violation("dependencies", f"job {r.batch_id}.{r.job_id} is Ready with {r.n_pending_parents} "
                  "pending parent(s)")
        for r in rows
    ]
