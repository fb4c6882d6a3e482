"""Named queries that read jobs and attempts for the API."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import and_, func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.domain.states import JobState
from corral.store.paging import filtered_page
from corral.store.tables import attempts, batch_updates, jobs


@dataclass(frozen=True, slots=True)
class JobRecord:
    batch_id: int
    job_id: int
    update_id: int
    user: str
    name: str | None
    state: str
    pool: str
    cores_mcpu: int
    memory_bytes: int
    storage_bytes: int
    always_run: bool
    n_max_attempts: int
    n_attempts: int
    exit_code: int | None
    status: dict[str, Any] | None
    msec_mcpu: int
    cost: float
    time_created: float
    time_completed: float | None
    attributes: dict[str, str]
    job_group_id: int = 0
    waiting_reason: str | None = None


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    batch_id: int
    job_id: int
    attempt_id: int
    instance_name: str
    state: str
    end_reason: str | None
    exit_code: int | None
    time_assigned: float
    time_started: float | None
    time_ended: float | None


_JOB_COLUMNS = [jobs.c[name] for name in JobRecord.__slots__]  # type: ignore[attr-defined]
_ATTEMPT_COLUMNS = [attempts.c[name] for name in AttemptRecord.__slots__]  # type: ignore[attr-defined]
_JOB_FIELDS: tuple[str, ...] = JobRecord.__slots__  # type: ignore[attr-defined]
JobPredicate = Callable[[JobRecord], bool]


def _job(row: Any) -> JobRecord:
    mapping = row._mapping
    values = {name: mapping[name] for name in _JOB_FIELDS}
    values["always_run"] = bool(values["always_run"])
    values["attributes"] = dict(values["attributes"] or {})
    return JobRecord(**values)


def _committed_jobs() -> Any:
    """Jobs of committed updates only: an update being uploaded is not part of the batch yet."""
    return (
        select(*_JOB_COLUMNS)
        .join(
            batch_updates,
            and_(batch_updates.c.batch_id == jobs.c.batch_id, batch_updates.c.update_id == jobs.c.update_id),
        )
        .where(batch_updates.c.committed.is_(True))
    )


async def get_job(
    conn: AsyncConnection, batch_id: int, job_id: int
) -> tuple[JobRecord, dict[str, Any]] | None:
    """A job of a committed update, with its spec."""
    query = (
        _committed_jobs().add_columns(jobs.c.spec).where(jobs.c.batch_id == batch_id, jobs.c.job_id == job_id)
    )
    row = (await conn.execute(query)).first()
    if row is None:
        return None
    return _job(row), dict(row.spec or {})


async def list_jobs(
    conn: AsyncConnection,
    batch_id: int,
    *,
    states: Iterable[JobState] | None = None,
    last_job_id: int | None = None,
    limit: int = 50,
    predicate: JobPredicate | None = None,
) -> list[JobRecord]:
    """Committed jobs of a batch in ascending job id after `last_job_id`, filtered by state (SQL) and
    `predicate` (query terms)."""
    query = _committed_jobs().where(jobs.c.batch_id == batch_id)
    if states is not None:
        query = query.where(jobs.c.state.in_([JobState(s).value for s in states]))
    return await filtered_page(
        conn, query, jobs.c.job_id, descending=False, cursor=last_job_id, limit=limit,
        convert=_job, predicate=predicate, min_page=500,
    )


async def count_waiting(conn: AsyncConnection, batch_id: int) -> int:
    """Ready jobs of the batch that fit no instance their pool can bring up (they say why)."""
    query = (
        select(func.count())
        .select_from(jobs)
        .where(jobs.c.batch_id == batch_id, jobs.c.state == JobState.READY)
        .where(jobs.c.waiting_reason.is_not(None))
    )
    return int((await conn.execute(query)).scalar_one())


async def list_attempts(conn: AsyncConnection, batch_id: int, job_id: int) -> list[AttemptRecord]:
    rows = await conn.execute(
        select(*_ATTEMPT_COLUMNS)
        .where(attempts.c.batch_id == batch_id, attempts.c.job_id == job_id)
        .order_by(attempts.c.attempt_id)
    )
    return [AttemptRecord(**dict(row._mapping)) for row in rows]
