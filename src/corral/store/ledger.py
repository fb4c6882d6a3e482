"""Named queries of the billing ledger: rate versions, attempt charges, usage roll-ups, cost caches.

The driver's accounting (driver/accounting.py) calls the writers inside its tick transaction: a charge
moves an attempt's `accrued_ms` and adds the same usage to the roll-ups in one transaction, and only if
`accrued_ms` is still what the driver last wrote, so a replay after a crash changes nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    and_,
    bindparam,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.domain.billing.ledger import CostLine, breakdown, rate_decimal, total
from corral.domain.billing.rate_book import RateVersion
from corral.errors import CorralError
from corral.store.tables import (
    attempt_charges,
    attempts,
    batch_usage,
    batches,
    billing_rates,
    daily_usage,
    instance_collections,
    instances,
    jobs,
)

AttemptKey = tuple[int, int, int]
CHUNK = 500


def _chunks(items: Sequence[Any], size: int = CHUNK) -> Iterable[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


# ---------------------------------------------------------------- rates


async def load_rates(conn: AsyncConnection) -> list[RateVersion]:
    query = select(billing_rates).order_by(billing_rates.c.resource, billing_rates.c.version)
    rows = await conn.execute(query)
    return [RateVersion(r.resource, r.version, r.rate, r.time_effective) for r in rows]


async def insert_rates(conn: AsyncConnection, versions: Sequence[RateVersion]) -> None:
    if versions:
        await conn.execute(
            billing_rates.insert(),
            [{"resource": v.resource, "version": v.version, "rate": v.rate,
              "time_effective": v.time_effective} for v in versions],
        )


_rate_cache: dict[str, dict[str, Decimal]] = {}  # per store: versioned name -> rate


async def rate_map(conn: AsyncConnection, names: Iterable[str]) -> Mapping[str, Decimal]:
    """Versioned rate by name. Versions never change, so they are cached; an unknown name reloads."""
    cache = _rate_cache.setdefault(conn.engine.url.render_as_string(hide_password=False), {})
    if any(n not in cache for n in names):
        for v in await load_rates(conn):
            cache[v.name] = rate_decimal(v.rate)
    return cache


# ---------------------------------------------------------------- charges (the driver)


@dataclass(frozen=True, slots=True)
class ChargeRow:
    batch_id: int
    job_id: int
    attempt_id: int
    billing_project: str
    user: str
    resources: list[tuple[str, int]]
    start_ms: int
    accrued_ms: int
    ended: bool = False

    @property
    def key(self) -> AttemptKey:
        return self.batch_id, self.job_id, self.attempt_id

    def moved(self, accrued_ms: int, ended: bool) -> ChargeRow:
        """This row accrued to `accrued_ms` (dataclasses.replace, without its per-call field lookups)."""
        return ChargeRow(self.batch_id, self.job_id, self.attempt_id, self.billing_project, self.user,
                         self.resources, self.start_ms, accrued_ms, ended)


_OPEN_CHARGES = attempt_charges.insert()


async def open_charges(conn: AsyncConnection, charges: Sequence[ChargeRow]) -> None:
    if charges:
        await conn.execute(
            _OPEN_CHARGES,
            [{"batch_id": c.batch_id, "job_id": c.job_id, "attempt_id": c.attempt_id,
              "billing_project": c.billing_project, "user": c.user,
              "resources": [list(r) for r in c.resources], "start_ms": c.start_ms,
              "accrued_ms": c.accrued_ms, "ended": c.ended} for c in charges],
        )


def _charge(row: Any) -> ChargeRow:
    return ChargeRow(row.batch_id, row.job_id, row.attempt_id, row.billing_project, row.user,
                     [(str(n), int(q)) for n, q in row.resources], int(row.start_ms), int(row.accrued_ms))


async def load_open_charges(conn: AsyncConnection) -> list[ChargeRow]:
    rows = await conn.execute(select(attempt_charges).where(attempt_charges.c.ended.is_(False)))
    return [_charge(r) for r in rows]


async def charged_attempts(conn: AsyncConnection, keys: Sequence[AttemptKey]) -> set[AttemptKey]:
    """Which of these attempts already have a charge row (ended or not)."""
    found: set[AttemptKey] = set()
    for part in _chunks(list(keys)):
        rows = await conn.execute(
            select(attempt_charges.c.batch_id, attempt_charges.c.job_id, attempt_charges.c.attempt_id).where(
                tuple_(attempt_charges.c.batch_id, attempt_charges.c.job_id, attempt_charges.c.attempt_id)
                .in_(list(part))
            )
        )
        found.update((r.batch_id, r.job_id, r.attempt_id) for r in rows)
    return found


async def attempt_end_times(conn: AsyncConnection, keys: Sequence[AttemptKey]) -> dict[AttemptKey, float]:
    """time_ended of those attempts that have ended (the attempts table is the truth about times)."""
    out: dict[AttemptKey, float] = {}
    for part in _chunks(list(keys)):
        rows = await conn.execute(
            select(attempts.c.batch_id, attempts.c.job_id, attempts.c.attempt_id, attempts.c.time_ended,
                   attempts.c.time_assigned)
            .where(tuple_(attempts.c.batch_id, attempts.c.job_id, attempts.c.attempt_id).in_(list(part)))
            .where(attempts.c.state == "ended")
        )
        for r in rows:
            out[(r.batch_id, r.job_id, r.attempt_id)] = float(
                r.time_ended if r.time_ended is not None else r.time_assigned
            )
    return out


async def ended_but_open(conn: AsyncConnection) -> dict[AttemptKey, float]:
    """Open charges whose attempt has ended (any path that ended it): key -> time_ended."""
    query = (
        select(attempt_charges.c.batch_id, attempt_charges.c.job_id, attempt_charges.c.attempt_id,
               attempts.c.time_ended, attempts.c.time_assigned)
        .join(attempts, and_(attempts.c.batch_id == attempt_charges.c.batch_id,
                             attempts.c.job_id == attempt_charges.c.job_id,
                             attempts.c.attempt_id == attempt_charges.c.attempt_id))
        .where(attempt_charges.c.ended.is_(False), attempts.c.state == "ended")
    )
    out: dict[AttemptKey, float] = {}
    for r in await conn.execute(query):
        ended = r.time_ended if r.time_ended is not None else r.time_assigned
        out[(r.batch_id, r.job_id, r.attempt_id)] = float(ended)
    return out


@dataclass(frozen=True, slots=True)
class ChargeMove:
    key: AttemptKey
    from_ms: int  # accrued_ms as the driver last wrote it
    to_ms: int
    ended: bool


_MOVE = (
    update(attempt_charges)
    .where(attempt_charges.c.batch_id == bindparam("b"), attempt_charges.c.job_id == bindparam("j"),
           attempt_charges.c.attempt_id == bindparam("a"), attempt_charges.c.accrued_ms == bindparam("f"),
           attempt_charges.c.ended.is_(False))
    .values(accrued_ms=bindparam("t"), ended=bindparam("e"))
)


# unnest() is planned as a small row source joined by primary key (a VALUES list was hashed against a
# scan of the whole table).
_PG_MOVE = text(
    "UPDATE attempt_charges AS c SET accrued_ms = mv.t, ended = mv.e "
    "FROM unnest(CAST(:b AS bigint[]), CAST(:j AS integer[]), CAST(:a AS integer[]), CAST(:f AS bigint[]), "
    "CAST(:t AS bigint[]), CAST(:e AS boolean[])) AS mv(b, j, a, f, t, e) "
    "WHERE c.batch_id = mv.b AND c.job_id = mv.j AND c.attempt_id = mv.a AND c.accrued_ms = mv.f "
    "AND c.ended = false RETURNING c.batch_id"
)


class LedgerConflict(CorralError):
    """Charges were not where the driver left them: its memory is stale; it must rebuild from the store."""


async def move_charges(conn: AsyncConnection, moves: Sequence[ChargeMove]) -> None:
    """Move accrued_ms from -> to (and close ended ones), each only where it still is `from` on an open
    charge. All move or LedgerConflict is raised (and the caller's transaction is rolled back)."""
    if not moves:
        return
    if conn.dialect.name == "sqlite":  # executemany reports how many rows it changed
        params = [{"b": m.key[0], "j": m.key[1], "a": m.key[2], "f": m.from_ms, "t": m.to_ms, "e": m.ended}
                  for m in moves]
        changed = (await conn.execute(_MOVE, params)).rowcount
    else:  # asyncpg has no executemany rowcount: one UPDATE joined to unnest()ed arrays, RETURNING
        changed = 0
        for part in _chunks(list(moves), 5000):
            result = await conn.execute(_PG_MOVE, {
                "b": [m.key[0] for m in part], "j": [m.key[1] for m in part], "a": [m.key[2] for m in part],
                "f": [m.from_ms for m in part], "t": [m.to_ms for m in part], "e": [m.ended for m in part],
            })
            changed += len(list(result))
    if changed != len(moves):
        raise LedgerConflict(
            f"billing ledger: {len(moves) - changed} of {len(moves)} charges were not where the driver "
            "left them; it rebuilds from the store"
        )


_UPSERTS: dict[tuple[str, str], Any] = {}  # (dialect, table) -> statement, built once


def _upsert(conn: AsyncConnection, table: Any, keys: list[str]) -> Any:
    cached = _UPSERTS.get((conn.dialect.name, table.name))
    if cached is not None:
        return cached
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table)
    stmt = stmt.on_conflict_do_update(
        index_elements=keys, set_={"usage": table.c.usage + stmt.excluded.usage}
    )
    _UPSERTS[(conn.dialect.name, table.name)] = stmt
    return stmt


async def add_usage(
    conn: AsyncConnection, by_batch: Mapping[tuple[int, str], int],
    by_day: Mapping[tuple[str, str, str, str], int],
) -> None:
    """Add usage to the roll-ups: (batch, resource) and (project, user, day, resource)."""
    rows_b = [{"batch_id": b, "resource": r, "usage": u} for (b, r), u in sorted(by_batch.items()) if u]
    rows_d = [{"billing_project": p, "user": user, "day": d, "resource": r, "usage": u}
              for (p, user, d, r), u in sorted(by_day.items()) if u]
    if rows_b:
        await conn.execute(_upsert(conn, batch_usage, ["batch_id", "resource"]), rows_b)
    if rows_d:
        await conn.execute(_upsert(conn, daily_usage, ["billing_project", "user", "day", "resource"]), rows_d)


async def other_attempts_usage(
    conn: AsyncConnection, known: Sequence[AttemptKey]
) -> dict[tuple[int, int], list[tuple[str, int]]]:
    """Usage of the other attempts (than those `known`) of the same jobs: a job's cost sums them all."""
    out: dict[tuple[int, int], list[tuple[str, int]]] = defaultdict(list)
    skip = set(known)
    for part in _chunks(sorted({(b, j) for b, j, _ in known})):
        rows = await conn.execute(
            select(attempt_charges.c.batch_id, attempt_charges.c.job_id, attempt_charges.c.attempt_id,
                   attempt_charges.c.resources, attempt_charges.c.start_ms, attempt_charges.c.accrued_ms)
            .where(tuple_(attempt_charges.c.batch_id, attempt_charges.c.job_id).in_(list(part)))
        )
        for r in rows:
            if (r.batch_id, r.job_id, r.attempt_id) not in skip:
                ms = int(r.accrued_ms) - int(r.start_ms)
                out[(r.batch_id, r.job_id)].extend((str(n), int(q) * ms) for n, q in r.resources)
    return out


_PG_JOB_COSTS = text(
    "UPDATE jobs AS j SET cost = v.c FROM unnest(CAST(:b AS bigint[]), CAST(:j AS integer[]), "
    "CAST(:c AS double precision[])) AS v(b, j, c) WHERE j.batch_id = v.b AND j.job_id = v.j"
)


_JOB_COSTS = (
    update(jobs).where(jobs.c.batch_id == bindparam("b"), jobs.c.job_id == bindparam("j"))
    .values(cost=bindparam("c"))
)


async def set_job_costs(conn: AsyncConnection, costs: Mapping[tuple[int, int], float]) -> None:
    """jobs.cost (what lists, queries and Hail's `cost` read), as the ledger says."""
    if not costs:
        return
    rows = sorted(costs.items())
    if conn.dialect.name == "postgresql":
        await conn.execute(_PG_JOB_COSTS, {"b": [b for (b, _), _ in rows], "j": [j for (_, j), _ in rows],
                                           "c": [c for _, c in rows]})
        return
    await conn.execute(_JOB_COSTS, [{"b": b, "j": j, "c": c} for (b, j), c in rows])


async def batch_usage_totals(conn: AsyncConnection, batch_ids: Sequence[int]) -> dict[int, dict[str, int]]:
    """The batch roll-up: usage per versioned resource, per batch (batches without usage: empty)."""
    out: dict[int, dict[str, int]] = {b: {} for b in batch_ids}
    for part in _chunks(list(batch_ids)):
        for r in await conn.execute(_BATCH_USAGE, {"ids": list(part)}):
            out[r.batch_id][r.resource] = int(r.usage)
    return out


async def set_batch_costs(conn: AsyncConnection, costs: Mapping[int, float]) -> None:
    """batches.cost, as the batch roll-up says (the driver computes it from the roll-up it wrote)."""
    if costs:
        await conn.execute(_BATCH_COST, [{"b": b, "c": c} for b, c in sorted(costs.items())])


_BATCH_COST = update(batches).where(batches.c.id == bindparam("b")).values(cost=bindparam("c"))
_BATCH_USAGE = select(batch_usage.c.batch_id, batch_usage.c.resource, batch_usage.c.usage).where(
    batch_usage.c.batch_id.in_(bindparam("ids", expanding=True))
)


# ---------------------------------------------------------------- reading (the API)


async def batch_breakdowns(
    conn: AsyncConnection, batch_ids: Sequence[int], rates: Mapping[str, Decimal] | None = None
) -> dict[int, list[CostLine]]:
    usage = {b: lines for b, lines in (await batch_usage_totals(conn, batch_ids)).items() if lines}
    names = {n for lines in usage.values() for n in lines}
    rates = rates if rates is not None else await rate_map(conn, names)
    return {b: breakdown(lines.items(), rates) for b, lines in usage.items()}


async def job_breakdown(conn: AsyncConnection, batch_id: int, job_id: int) -> list[CostLine]:
    rows = await conn.execute(
        select(attempt_charges.c.resources, attempt_charges.c.start_ms, attempt_charges.c.accrued_ms)
        .where(attempt_charges.c.batch_id == batch_id, attempt_charges.c.job_id == job_id)
    )
    usage = [(str(n), int(q) * (int(r.accrued_ms) - int(r.start_ms))) for r in rows for n, q in r.resources]
    return breakdown(usage, await rate_map(conn, {n for n, _ in usage}))


@dataclass(frozen=True, slots=True)
class UsageRow:
    billing_project: str
    user: str
    day: str
    resource: str
    usage: int


async def daily_rows(
    conn: AsyncConnection, *, projects: Sequence[str] | None = None, since: str | None = None,
    until: str | None = None,
) -> list[UsageRow]:
    """Roll-up rows (days `since` <= day <= `until`, both YYYY-MM-DD) of the given projects (None: all)."""
    query = select(daily_usage)
    if projects is not None:
        query = query.where(daily_usage.c.billing_project.in_(list(projects)))
    if since is not None:
        query = query.where(daily_usage.c.day >= since)
    if until is not None:
        query = query.where(daily_usage.c.day <= until)
    rows = await conn.execute(query.order_by(daily_usage.c.day, daily_usage.c.billing_project,
                                             daily_usage.c.user, daily_usage.c.resource))
    return [UsageRow(r.billing_project, r.user, r.day, r.resource, int(r.usage)) for r in rows]


async def project_spend(
    conn: AsyncConnection, projects: Sequence[str] | None = None
) -> dict[str, Decimal]:
    """Total cost per billing project, from the daily roll-up."""
    rows = await daily_rows(conn, projects=projects)
    by_project: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for r in rows:
        by_project[r.billing_project].append((r.resource, r.usage))
    rates = await rate_map(conn, {r.resource for r in rows})
    return {p: total(breakdown(lines, rates)) for p, lines in by_project.items()}


# ---------------------------------------------------------------- facts the driver prices attempts with


async def batch_projects(conn: AsyncConnection, batch_ids: Sequence[int]) -> dict[int, str]:
    out: dict[int, str] = {}
    for part in _chunks(list(batch_ids)):
        query = select(batches.c.id, batches.c.billing_project).where(batches.c.id.in_(list(part)))
        rows = await conn.execute(query)
        out.update({r.id: r.billing_project for r in rows})
    return out


@dataclass(frozen=True, slots=True)
class InstanceRow:
    name: str
    collection: str
    kind: str  # pool | job_private (the collection's), "" when unknown
    cores_mcpu: int
    memory_bytes: int
    gpus: int
    gpu_type: str | None
    reserved_for: str | None
    metadata: dict[str, Any]
    collection_config: dict[str, Any]


_INSTANCE_ROWS = (
    select(instances.c.name, instances.c.collection, instances.c.cores_mcpu, instances.c.memory_bytes,
           instances.c.gpus, instances.c.gpu_type, instances.c.reserved_for, instances.c.metadata,
           instance_collections.c.kind, instance_collections.c.config)
    .join(instance_collections, instance_collections.c.name == instances.c.collection, isouter=True)
    .where(instances.c.name.in_(bindparam("names", expanding=True)))
)


async def instance_rows(conn: AsyncConnection, names: Sequence[str]) -> dict[str, InstanceRow]:
    return {
        r.name: InstanceRow(r.name, r.collection, r.kind or "", r.cores_mcpu, r.memory_bytes, r.gpus,
                            r.gpu_type, r.reserved_for, dict(r.metadata or {}), dict(r.config or {}))
        for r in await conn.execute(_INSTANCE_ROWS, {"names": list(names)})
    }
