"""Named queries for batches and their updates: create (idempotent on token), read, list, cancel, delete."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, bindparam, cast, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.domain.states import BatchState
from corral.errors import InvalidInput
from corral.store.paging import filtered_page
from corral.store.tables import batch_updates, batches, billing_project_users


@dataclass(frozen=True, slots=True)
class BatchRecord:
    id: int
    user: str
    billing_project: str
    token: str
    attributes: dict[str, str]
    state: str
    closed: bool
    cancelled: bool
    deleted: bool
    cancel_after_n_failures: int | None
    callback: str | None
    n_jobs: int
    n_completed: int
    n_succeeded: int
    n_failed: int
    n_cancelled: int
    msec_mcpu: int
    cost: float
    time_created: float
    time_closed: float | None
    time_completed: float | None

    @property
    def complete(self) -> bool:
        return self.closed and self.n_completed >= self.n_jobs


@dataclass(frozen=True, slots=True)
class UpdateRecord:
    batch_id: int
    update_id: int
    token: str
    n_jobs: int
    start_job_id: int
    committed: bool

    @property
    def end_job_id(self) -> int:
        """Last absolute job id of the update (start_job_id - 1 when it has no jobs)."""
        return self.start_job_id + self.n_jobs - 1


_BATCH_COLUMNS = [batches.c[name] for name in BatchRecord.__slots__]  # type: ignore[attr-defined]
_UPDATE_COLUMNS = [batch_updates.c[name] for name in UpdateRecord.__slots__]  # type: ignore[attr-defined]


def _batch(row: Any) -> BatchRecord:
    values = dict(row._mapping)
    for flag in ("closed", "cancelled", "deleted"):
        values[flag] = bool(values[flag])
    values["attributes"] = dict(values["attributes"] or {})
    return BatchRecord(**values)


def _update(row: Any) -> UpdateRecord:
    values = dict(row._mapping)
    values["committed"] = bool(values["committed"])
    return UpdateRecord(**values)


# ---------------------------------------------------------------- batches


_GET_BATCH = select(*_BATCH_COLUMNS).where(batches.c.id == bindparam("b"), batches.c.deleted.is_(False))
# NO KEY UPDATE: does not block job inserts, whose foreign key check takes KEY SHARE on this row.
_GET_BATCH_FOR_UPDATE = _GET_BATCH.with_for_update(key_share=True)


async def get_batch(conn: AsyncConnection, batch_id: int, *, for_update: bool = False) -> BatchRecord | None:
    """A batch that is not deleted; `for_update` locks its row (PostgreSQL) for the transaction.
    (Built once: clients poll a batch's status often.)"""
    query = _GET_BATCH_FOR_UPDATE if for_update else _GET_BATCH
    row = (await conn.execute(query, {"b": batch_id})).first()
    return _batch(row) if row else None


async def batch_by_token(conn: AsyncConnection, user: str, token: str) -> BatchRecord | None:
    row = (
        await conn.execute(select(*_BATCH_COLUMNS).where(batches.c.user == user, batches.c.token == token))
    ).first()
    return _batch(row) if row else None


async def insert_batch(
    conn: AsyncConnection,
    *,
    user: str,
    billing_project: str,
    token: str,
    attributes: dict[str, str],
    cancel_after_n_failures: int | None,
    callback: str | None,
    now: float,
) -> int:
    result = await conn.execute(
        batches.insert().values(
            user=user,
            billing_project=billing_project,
            token=token,
            attributes=attributes,
            state=BatchState.OPEN,
            closed=False,
            cancelled=False,
            deleted=False,
            cancel_after_n_failures=cancel_after_n_failures,
            callback=callback,
            n_jobs=0,
            n_completed=0,
            n_succeeded=0,
            n_failed=0,
            n_cancelled=0,
            msec_mcpu=0,
            cost=0.0,
            time_created=now,
        )
    )
    pk = result.inserted_primary_key
    assert pk is not None
    return int(pk[0])


BatchPredicate = Callable[[BatchRecord], bool]


async def list_batches(
    conn: AsyncConnection,
    *,
    viewer: str | None,
    last_batch_id: int | None,
    limit: int,
    predicate: BatchPredicate | None = None,
) -> list[BatchRecord]:
    """Newest first, below `last_batch_id`. viewer=None: every batch (admins); else the viewer's own and
    those of billing projects the viewer belongs to. `predicate` filters further (query terms)."""
    query = select(*_BATCH_COLUMNS).where(batches.c.deleted.is_(False))
    if viewer is not None:
        member_of = select(billing_project_users.c.billing_project).where(
            billing_project_users.c.user == viewer
        )
        query = query.where(or_(batches.c.user == viewer, batches.c.billing_project.in_(member_of)))
    return await filtered_page(
        conn, query, batches.c.id, descending=True, cursor=last_batch_id, limit=limit,
        convert=_batch, predicate=predicate, min_page=200,
    )


async def set_batch_cancelled(conn: AsyncConnection, batch_id: int) -> bool:
    """Flag the batch cancelled (state 'cancelled' unless already complete). True if it changed."""
    record = await get_batch(conn, batch_id, for_update=True)
    if record is None or record.cancelled:
        return False
    values: dict[str, Any] = {"cancelled": True}
    if not record.complete:
        values["state"] = BatchState.CANCELLED
    await conn.execute(update(batches).where(batches.c.id == batch_id).values(**values))
    return True


async def mark_batch_deleted(conn: AsyncConnection, batch_id: int) -> None:
    await conn.execute(update(batches).where(batches.c.id == batch_id).values(deleted=True))


# ---------------------------------------------------------------- updates


async def get_update(
    conn: AsyncConnection, batch_id: int, update_id: int, *, for_update: bool = False, for_share: bool = False
) -> UpdateRecord | None:
    """`for_share` (bunch uploads, in parallel) and `for_update` (commit) lock the row on PostgreSQL."""
    query = select(*_UPDATE_COLUMNS).where(
        batch_updates.c.batch_id == batch_id, batch_updates.c.update_id == update_id
    )
    if for_update or for_share:
        query = query.with_for_update(read=not for_update)
    row = (await conn.execute(query)).first()
    return _update(row) if row else None


async def update_by_token(conn: AsyncConnection, batch_id: int, token: str) -> UpdateRecord | None:
    row = (
        await conn.execute(
            select(*_UPDATE_COLUMNS).where(
                batch_updates.c.batch_id == batch_id, batch_updates.c.token == token
            )
        )
    ).first()
    return _update(row) if row else None


MAX_JOB_ID = 2**31 - 1  # jobs.job_id is a 32-bit integer


async def insert_update(
    conn: AsyncConnection, batch_id: int, *, token: str, n_jobs: int, now: float
) -> UpdateRecord:
    """The next update of the batch, its job ids following every earlier update's.

    The caller holds the batch row lock (get_batch(for_update=True)) so concurrent updates do not
    receive the same ids.
    """
    row = (
        await conn.execute(
            select(
                func.coalesce(func.max(batch_updates.c.update_id), 0).label("last_update"),
                func.coalesce(
                    func.max(cast(batch_updates.c.start_job_id, BigInteger) + batch_updates.c.n_jobs), 1
                ).label("next_job"),
            ).where(batch_updates.c.batch_id == batch_id)
        )
    ).one()
    record = UpdateRecord(batch_id, int(row.last_update) + 1, token, n_jobs, int(row.next_job), False)
    if record.start_job_id + n_jobs - 1 > MAX_JOB_ID:
        raise InvalidInput(
            f"n_jobs: batch {batch_id} already has {record.start_job_id - 1} job ids; {n_jobs} more would "
            f"pass the limit of {MAX_JOB_ID} jobs in a batch: start a new batch",
            field="n_jobs",
        )
    await conn.execute(
        batch_updates.insert().values(
            batch_id=batch_id,
            update_id=record.update_id,
            token=token,
            n_jobs=n_jobs,
            start_job_id=record.start_job_id,
            committed=False,
            time_created=now,
        )
    )
    return record
