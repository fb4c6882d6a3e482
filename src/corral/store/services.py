"""Named queries of service jobs: record a service serving (and release the jobs that wait for it),
fail the jobs of a service that ended under them, find services whose waiting jobs have all ended.

Called inside the driver's tick transaction, like store/scheduling.py. A `when_ready` link is released
here, once, when its service first serves (the completion cascade skips these links); a service that
ends without serving, or stops serving, ends the jobs still waiting on it here too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import and_, bindparam, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.domain.services import Endpoint, client_spec
from corral.domain.states import COMPLETE_STATES, JobState
from corral.store import scheduling as q
from corral.store.cascade import _newly_ready
from corral.store.job_moves import move_jobs
from corral.store.tables import attempts, job_parents, jobs

JobKey = tuple[int, int]


@dataclass(frozen=True)
class ServingReport:
    batch_id: int
    job_id: int
    attempt_id: int
    instance_name: str
    endpoint: dict[str, Any]  # {host, ports, scheme}, plus probes/timings
    time: float


@dataclass
class ServingResult:
    cascade: q.CascadeResult = field(default_factory=q.CascadeResult)
    # job waiting for a service -> (placement, the instance the service runs on)
    placements: dict[JobKey, tuple[str, str]] = field(default_factory=dict)


async def _waiting_jobs(conn: AsyncConnection, services: Sequence[JobKey]) -> set[JobKey]:
    found: set[JobKey] = set()
    by_batch: dict[int, list[int]] = defaultdict(list)
    for b, j in services:
        by_batch[b].append(j)
    for batch_id, ids in by_batch.items():
        rows = await conn.execute(
            select(job_parents.c.job_id).where(
                job_parents.c.batch_id == batch_id,
                job_parents.c.parent_id.in_(ids),
                job_parents.c.when_ready.is_(True),
            )
        )
        found.update((batch_id, r.job_id) for r in rows)
    return found


async def _endpoints(conn: AsyncConnection, batch_id: int, ids: Sequence[int]) -> dict[int, Endpoint]:
    rows = await conn.execute(
        select(jobs.c.job_id, jobs.c.name, jobs.c.endpoint, jobs.c.state).where(
            jobs.c.batch_id == batch_id, jobs.c.job_id.in_(list(ids)), jobs.c.time_serving.is_not(None)
        )
    )
    out: dict[int, Endpoint] = {}
    for r in rows:
        if r.endpoint and r.state == JobState.RUNNING:
            raw = dict(r.endpoint)
            raw["name"] = r.name or f"job{r.job_id}"
            out[r.job_id] = Endpoint.from_wire(raw)
    return out


async def mark_serving(
    conn: AsyncConnection, reports: Sequence[ServingReport], now: float
) -> ServingResult:
    """Services whose probes passed: record endpoint and time; the jobs waiting for them get their
    endpoints (env, templates) and become Ready when nothing else holds them."""
    result = ServingResult()
    if not reports:
        return result
    first_time: list[ServingReport] = []
    for report in reports:
        moved = await conn.execute(
            update(jobs)
            .where(jobs.c.batch_id == report.batch_id, jobs.c.job_id == report.job_id)
            .where(jobs.c.state == JobState.RUNNING, jobs.c.n_attempts == report.attempt_id)
            .where(jobs.c.time_serving.is_(None))  # a duplicate report changes nothing
            .values(endpoint=report.endpoint, time_serving=report.time)
        )
        if moved.rowcount:
            first_time.append(report)
    instance_of = {(r.batch_id, r.job_id): r.instance_name for r in first_time}
    waiting = await _waiting_jobs(conn, list(instance_of))
    if not waiting:
        return result
    by_batch: dict[int, list[int]] = defaultdict(list)
    for b, j in waiting:
        by_batch[b].append(j)
    for batch_id, ids in by_batch.items():
        rows = list(
            await conn.execute(
                select(jobs.c.job_id, jobs.c.spec).where(
                    jobs.c.batch_id == batch_id, jobs.c.job_id.in_(ids), jobs.c.state == JobState.PENDING
                )
            )
        )
        linked = {int(link["job_id"]) for r in rows for link in r.spec.get("service_links") or []}
        endpoints = await _endpoints(conn, batch_id, sorted(linked))
        updates = []
        for r in rows:
            links = r.spec.get("service_links") or []
            mine = {
                endpoints[int(link["job_id"])].name: endpoints[int(link["job_id"])]
                for link in links
                if int(link["job_id"]) in endpoints
            }
            updates.append({"b": batch_id, "j": r.job_id, "spec": client_spec(r.spec, mine)})
            for link in links:
                placement = link.get("placement")
                svc = (batch_id, int(link["job_id"]))
                if placement and svc in instance_of:
                    result.placements[(batch_id, r.job_id)] = (str(placement), instance_of[svc])
        if updates:
            await conn.execute(
                update(jobs)
                .where(jobs.c.batch_id == bindparam("b"), jobs.c.job_id == bindparam("j"))
                .where(jobs.c.state == JobState.PENDING)
                .values(spec=bindparam("spec")),
                updates,
            )
    # Each serving service releases its own link of each waiting job (once: time_serving was unset).
    released: dict[JobKey, int] = defaultdict(int)
    for batch_id, ids in by_batch.items():
        services_here = [j for b, j in instance_of if b == batch_id]
        links = await conn.execute(
            select(job_parents.c.job_id).where(
                job_parents.c.batch_id == batch_id, job_parents.c.job_id.in_(ids),
                job_parents.c.when_ready.is_(True), job_parents.c.parent_id.in_(services_here),
            )
        )
        for link in links:
            released[(batch_id, link.job_id)] += 1
    if released:
        await conn.execute(
            update(jobs)
            .where(jobs.c.batch_id == bindparam("b"), jobs.c.job_id == bindparam("j"))
            .where(jobs.c.state == JobState.PENDING)
            .values(n_pending_parents=jobs.c.n_pending_parents - bindparam("n")),
            [{"b": b, "j": j, "n": n} for (b, j), n in released.items()],
        )
    new_ready = [x for x in await _newly_ready(conn, waiting) if not x.doomed or x.always_run]
    if new_ready:
        await move_jobs(conn, JobState.READY, [{"b": x.job.batch_id, "j": x.job.job_id} for x in new_ready],
                        only_from={JobState.PENDING})
        result.cascade.ready.extend(new_ready)
    return result


async def join_earlier_services(
    conn: AsyncConnection, batch_id: int, start_job_id: int, end_job_id: int
) -> None:
    """At the commit of an update (after its parents were recounted): its jobs that wait `when_ready` on
    services of earlier updates. A service already serving releases the link at once and hands over its
    endpoint (mark_serving did so only for the jobs it found then); one that has ended (or a job that is no
    service) dooms the job, which would otherwise wait for ever (a service serves once). Services not serving
    yet release it later, in mark_serving."""
    links = list(
        await conn.execute(
            select(job_parents.c.job_id, job_parents.c.parent_id).where(
                job_parents.c.batch_id == batch_id,
                job_parents.c.job_id.between(start_job_id, end_job_id),
                job_parents.c.parent_id < start_job_id,
                job_parents.c.when_ready.is_(True),
            )
        )
    )
    if not links:
        return
    services = sorted({link.parent_id for link in links})
    serving = await _endpoints(conn, batch_id, services)
    ended: dict[int, str] = {}
    for r in await conn.execute(
        select(jobs.c.job_id, jobs.c.name, jobs.c.state, jobs.c.spec).where(
            jobs.c.batch_id == batch_id, jobs.c.job_id.in_(services)
        )
    ):
        name = r.name or f"job{r.job_id}"
        if not (r.spec or {}).get("service"):
            ended[r.job_id] = (f"job {r.job_id} ('{name}') is not a service, so it is never ready: wait for "
                               "its completion with absolute_parent_ids instead")
        elif JobState(r.state) in COMPLETE_STATES:
            ended[r.job_id] = (
                f"service '{name}' (job {r.job_id}) had already ended ({JobState(r.state).value}) when "
                "this job was submitted: a service serves once, so it would never be ready"
            )
    waits_on: dict[int, list[int]] = defaultdict(list)
    for link in links:
        waits_on[link.job_id].append(link.parent_id)
    children = await conn.execute(
        select(jobs.c.job_id, jobs.c.spec).where(
            jobs.c.batch_id == batch_id, jobs.c.job_id.in_(sorted(waits_on)), jobs.c.state == JobState.PENDING
        )
    )
    for child in children:
        released = [p for p in waits_on[child.job_id] if p in serving]
        gone = [p for p in waits_on[child.job_id] if p in ended]
        values: dict[str, Any] = {}
        if released:
            mine = {serving[p].name: serving[p] for p in released}
            values["spec"] = client_spec(child.spec, mine)
            values["n_pending_parents"] = jobs.c.n_pending_parents - len(released)
        if gone:
            values.update(parent_failed=True, status={"error": ended[gone[0]], "service_failed": True})
        if values:
            await conn.execute(
                update(jobs)
                .where(jobs.c.batch_id == batch_id, jobs.c.job_id == child.job_id)
                .where(jobs.c.state == JobState.PENDING)
                .values(**values)
            )


@dataclass
class FailedDependents:
    cascade: q.CascadeResult
    killed: list[tuple[int, int, int, str]]  # attempts of waiting jobs to stop on their workers
    dropped: list[JobKey]  # Ready jobs to take off the queues


async def service_ended(
    conn: AsyncConnection, ended: Sequence[tuple[int, int, str]], now: float
) -> FailedDependents:
    """Services (batch, job, reason) whose attempt ended without a stop request: they no longer serve;
    jobs that waited on them and have not ended end with the reason: Running ones Failed, Ready ones
    Error, Pending ones Cancelled (their link was released when the service served, or never will be)."""
    out = FailedDependents(q.CascadeResult(), [], [])
    if not ended:
        return out
    await conn.execute(
        update(jobs)
        .where(jobs.c.batch_id == bindparam("b"), jobs.c.job_id == bindparam("j"))
        .values(time_serving=None),
        [{"b": b, "j": j} for b, j, _ in ended],
    )
    reasons = {(b, j): why for b, j, why in ended}
    waiting = await _waiting_jobs(conn, list(reasons))
    if not waiting:
        return out
    completed: list[tuple[int, int, JobState]] = []
    for batch_id, job_id in sorted(waiting):
        row = (
            await conn.execute(
                select(jobs.c.state, jobs.c.spec).where(
                    jobs.c.batch_id == batch_id, jobs.c.job_id == job_id
                )
            )
        ).one()
        state = JobState(row.state)
        if state not in (JobState.PENDING, JobState.READY, JobState.RUNNING):
            continue
        why = next(
            reasons[(batch_id, int(link["job_id"]))]
            for link in row.spec.get("service_links") or []
            if (batch_id, int(link["job_id"])) in reasons
        )
        status = {"error": why, "service_failed": True}
        target = {JobState.PENDING: JobState.CANCELLED, JobState.READY: JobState.ERROR}.get(
            state, JobState.FAILED
        )
        moved = await move_jobs(
            conn, target, only_from={state}, where=[jobs.c.batch_id == batch_id, jobs.c.job_id == job_id],
            values={"status": status, "time_completed": now},
        )
        if not moved:
            continue
        if state is JobState.PENDING:
            pass
        elif state is JobState.READY:
            out.dropped.append((batch_id, job_id))
        else:
            found = await conn.execute(
                select(attempts.c.attempt_id, attempts.c.instance_name).where(
                    attempts.c.batch_id == batch_id,
                    attempts.c.job_id == job_id,
                    attempts.c.state == "running",
                )
            )
            for a in found:
                out.killed.append((batch_id, job_id, a.attempt_id, a.instance_name))
                await conn.execute(
                    update(attempts)
                    .where(
                        attempts.c.batch_id == batch_id,
                        attempts.c.job_id == job_id,
                        attempts.c.attempt_id == a.attempt_id,
                        attempts.c.state == "running",
                    )
                    .values(state="ended", end_reason="service_failed", status=status, time_ended=now)
                )
        completed.append((batch_id, job_id, target))
    out.cascade = await q.complete_jobs(conn, completed, now)
    return out


async def services_to_stop(conn: AsyncConnection) -> list[tuple[int, int, int, str]]:
    """Running services that were waited on and whose waiting jobs have all ended:
    (batch, job, attempt, instance) of their running attempts."""
    svc = jobs.alias("svc")
    child = jobs.alias("child")
    services = list(
        await conn.execute(
            select(svc.c.batch_id, svc.c.job_id).where(
                svc.c.state == JobState.RUNNING, svc.c.time_serving.is_not(None)
            )
        )
    )
    due: list[tuple[int, int, int, str]] = []
    complete = [s.value for s in COMPLETE_STATES]
    for s in services:
        rows = list(
            await conn.execute(
                select(child.c.state)
                .select_from(
                    job_parents.join(
                        child,
                        and_(
                            child.c.batch_id == job_parents.c.batch_id,
                            child.c.job_id == job_parents.c.job_id,
                        ),
                    )
                )
                .where(
                    job_parents.c.batch_id == s.batch_id,
                    job_parents.c.parent_id == s.job_id,
                    job_parents.c.when_ready.is_(True),
                )
            )
        )
        if not rows or any(r.state not in complete for r in rows):
            continue
        for a in await conn.execute(
            select(attempts.c.attempt_id, attempts.c.instance_name).where(
                attempts.c.batch_id == s.batch_id,
                attempts.c.job_id == s.job_id,
                attempts.c.state == "running",
            )
        ):
            due.append((s.batch_id, s.job_id, a.attempt_id, a.instance_name))
    return due


async def load_placements(conn: AsyncConnection) -> dict[JobKey, tuple[str, str]]:
    """After a restart: Ready jobs with a placement relative to a serving service, and its instance."""
    rows = await conn.execute(
        select(jobs.c.batch_id, jobs.c.job_id, jobs.c.spec).where(jobs.c.state == JobState.READY)
    )
    wanted: dict[JobKey, tuple[str, JobKey]] = {}
    for r in rows:
        for link in r.spec.get("service_links") or []:
            if link.get("placement"):
                wanted[(r.batch_id, r.job_id)] = (
                    str(link["placement"]),
                    (r.batch_id, int(link["job_id"])),
                )
    out: dict[JobKey, tuple[str, str]] = {}
    for key, (placement, (b, j)) in wanted.items():
        inst = (
            await conn.execute(
                select(attempts.c.instance_name).where(
                    attempts.c.batch_id == b, attempts.c.job_id == j, attempts.c.state == "running"
                )
            )
        ).first()
        if inst is not None:
            out[key] = (placement, inst.instance_name)
    return out
