"""The driver's accounting: open a charge when an attempt starts running, charge running attempts every
accrual_interval, close the charge when the attempt ends, and cancel the batches of a billing project
whose spend reaches its limit.

Everything runs inside the writer loop's tick transaction (`settle`), so charges, the attempt state
changes they follow, and the roll-ups commit together. A charge moves `accrued_ms` from the value the
driver last wrote to `now` and adds exactly that interval's usage: after a crash the driver reloads
`accrued_ms` and goes on from there, so nothing is lost or counted twice.

An attempt is charged from its start (the time its worker reported it started, within the driver's
window; the assignment time if it ended before starting) to its end, as the attempts table records them.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from corral.config import Settings
from corral.domain.billing.ledger import breakdown, cost_of, slice_usage, to_ms, total
from corral.domain.billing.limits import is_over_limit
from corral.domain.billing.pricing import AttemptDemand, InstanceFacts, PricedResource, price_attempt
from corral.domain.billing.rate_book import RateBook, RateVersion
from corral.driver.instances import AttemptInFlight
from corral.store import batches as batch_store
from corral.store import billing as billing_store
from corral.store import ledger
from corral.store.ledger import AttemptKey, ChargeMove, ChargeRow

log = logging.getLogger("corral.driver.accounting")
BATCH_USAGE_KEPT = 1000  # batches whose roll-up the accounting keeps in memory
PENDING_CHECK_AFTER = 10.0  # seconds an attempt may stay assigned without starting before the store is asked
PRICES_KEPT = 4096  # (instance facts, demand) pairs whose priced resources the accounting remembers


@dataclass(slots=True)
class OpenCharge:
    row: ChargeRow
    accrued_ms: int


def _float(value: object) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def instance_facts(rec: ledger.InstanceRow) -> InstanceFacts:
    """The per-instance price hook: metadata `price_per_hour` (whole instance), else the older
    `cost_per_core_hour` x cores that the autoscaler records from a shape's price."""
    meta = rec.metadata
    price = _float(meta.get("price_per_hour"))
    per_core = _float(meta.get("cost_per_core_hour"))
    if price is None and per_core is not None:
        price = per_core * rec.cores_mcpu / 1000
    options = rec.collection_config.get("provider_options") or {}
    partition = meta.get("partition") or options.get("partition")
    machine = meta.get("machine_type") or meta.get("shape")
    return InstanceFacts(
        name=rec.name, collection=rec.collection,
        job_private=rec.reserved_for is not None or rec.kind == "job_private",
        cores_mcpu=rec.cores_mcpu, memory_bytes=rec.memory_bytes, gpus=rec.gpus, gpu_type=rec.gpu_type,
        host=str(meta["host"]) if meta.get("host") else None,
        partition=str(partition) if partition else None,
        machine_type=str(machine) if machine else None, price_per_hour=price,
    )


class Accounting:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.config = settings.billing
        # This process's rates apply from now: an attempt that started before (under a previous
        # server's configuration, its charge not yet opened when that server died) keeps the
        # version in force when it started.
        self.config_since = time.time()
        self.enabled = settings.billing.enabled
        self.book = RateBook()
        self.open: dict[AttemptKey, OpenCharge] = {}
        self.spend: dict[str, Decimal] = defaultdict(Decimal)
        self.limits: dict[str, float] = {}
        self.last_accrual = 0.0
        self._pending: dict[AttemptKey, AttemptInFlight] = {}  # assigned, not yet started
        self._maybe_charged: set[AttemptKey] = set()  # found running at rebuild: a charge may exist
        self._ended: dict[AttemptKey, float] = {}
        self._projects: dict[int, str] = {}
        self._facts: dict[str, InstanceFacts] = {}
        # price_attempt is a function of the config (this object's, fixed), the instance's facts (read
        # afresh every tick: a new price is a new key) and the demand; many short jobs share one pair.
        self._prices: dict[tuple[InstanceFacts, AttemptDemand], list[PricedResource]] = {}
        self._charged: dict[AttemptKey, tuple[ChargeRow, int]] = {}  # this tick's: row, accrued_ms
        # The batch roll-up (usage per resource) of batches charged lately, as this driver wrote it: only
        # the accounting writes it, inside the tick, so batches.cost needs no read of it per tick. A failed
        # tick rebuilds (and empties this); the oldest batches are dropped (read again when charged).
        self._batch_usage: OrderedDict[int, dict[str, int]] = OrderedDict()

    # ------------------------------------------------------------ what the driver tells it

    def attempt_assigned(self, flight: AttemptInFlight) -> None:
        """Its charge opens once it has started (flight.time_started) or ended."""
        if self.enabled:
            self._pending[_key(flight)] = flight

    def attempts_returned(self, keys: Iterable[AttemptKey]) -> None:
        """Given back unstarted by their worker (driver/lookahead.py): they held nothing, never charged."""
        if self.enabled:
            for key in keys:
                self._pending.pop(key, None)

    def attempts_ended(self, ended: Iterable[tuple[int, int, int, float]]) -> None:
        """(batch, job, attempt, time_ended) as the store recorded them in this tick."""
        if self.enabled:
            for b, j, a, t in ended:
                self._ended[(b, j, a)] = t

    async def rebuild(self, engine: AsyncEngine, flights: Sequence[AttemptInFlight]) -> None:
        """From the store: rate versions, open charges, spend and limits; flights without a charge
        (started before the ledger existed) are opened at their assignment time."""
        self.book, self.open, self._pending, self._ended = RateBook(), {}, {}, {}
        self._batch_usage = OrderedDict()
        self.spend = defaultdict(Decimal)
        if not self.enabled:
            return
        async with engine.connect() as conn:
            for version in await ledger.load_rates(conn):
                self.book.add(version)
            for row in await ledger.load_open_charges(conn):
                self.open[row.key] = OpenCharge(row, row.accrued_ms)
            self.spend.update(await ledger.project_spend(conn))
            self.limits = await billing_store.limits(conn)
        self._pending = {_key(f): f for f in flights if _key(f) not in self.open}
        self._maybe_charged = set(self._pending)
        self.last_accrual = time.time()

    # ------------------------------------------------------------ the tick

    async def settle(self, conn: AsyncConnection, now: float) -> list[int]:
        """Charge what happened since the last tick; returns batches a spend limit has just cancelled."""
        if not self.enabled:
            return []
        periodic = now - self.last_accrual >= self.config.accrual_interval
        stale = [k for k, f in self._pending.items() if now - f.time_assigned > PENDING_CHECK_AFTER]
        if periodic and stale:  # assigned long ago, never started: ended by a path that did not say so?
            ended = await ledger.attempt_end_times(conn, stale)
            self._ended.update({k: t for k, t in ended.items() if k not in self._ended})
        opened = await self._open_new(conn)
        now_ms = to_ms(now)
        targets: dict[AttemptKey, tuple[int, bool]] = {}
        for key, t in self._ended.items():
            if key in self.open:
                targets[key] = (max(to_ms(t), self.open[key].row.start_ms), True)
        self._ended = {}
        if periodic:
            self.last_accrual = now
            for key, t in (await ledger.ended_but_open(conn)).items():  # ended by a path we missed
                if key in self.open and key not in targets:
                    targets[key] = (max(to_ms(t), self.open[key].row.start_ms), True)
            for key, charge in self.open.items():
                targets.setdefault(key, (max(now_ms, charge.row.start_ms), False))
            self.limits = await billing_store.limits(conn)
        if not targets:
            await ledger.open_charges(conn, opened)
            return []
        touched = await self._charge(conn, targets, opened)
        return await self._enforce_limits(conn, touched) if periodic or touched else []

    async def _open_new(self, conn: AsyncConnection) -> list[ChargeRow]:
        """Charges of attempts that started (or ended) since the last tick, open in memory; they are
        written by the caller, already charged when they also have something to charge this tick."""
        new = [f for k, f in self._pending.items() if f.time_started is not None or k in self._ended]
        if not new:
            return []
        for f in new:
            del self._pending[_key(f)]
        unknown_batches = sorted({f.batch_id for f in new} - set(self._projects))
        if unknown_batches:
            self._projects.update(await ledger.batch_projects(conn, unknown_batches))
        # Read afresh each time: a provider may learn its instance's price after registering it.
        for name, rec in (await ledger.instance_rows(conn, sorted({f.instance_name for f in new}))).items():
            self._facts[name] = instance_facts(rec)
        check = [_key(f) for f in new if _key(f) in self._maybe_charged]
        already = await ledger.charged_attempts(conn, check) if check else set()
        self._maybe_charged.difference_update(check)
        versions: list[RateVersion] = []
        rows: list[ChargeRow] = []
        for f in new:
            facts = self._facts.get(f.instance_name)
            project = self._projects.get(f.batch_id)
            if _key(f) in already:
                continue
            if facts is None or project is None:  # its instance or batch row is gone: nothing to price by
                log.warning("attempt %s: no instance %r or batch in the store; not charged", f.key,
                            f.instance_name)
                continue
            storage = int(f.payload.get("storage_bytes") or 0)
            demand = AttemptDemand(f.cores_mcpu, f.memory_bytes, storage, f.gpus)
            resources: list[tuple[str, int]] = []
            started = f.time_started if f.time_started is not None else f.time_assigned
            for priced in self._priced(facts, demand):
                earlier = (
                    self.book.in_force_at(priced.resource, started) if started < self.config_since else None
                )
                if earlier is not None:
                    version = earlier
                else:
                    version, is_new = self.book.version_for(priced.resource, priced.rate, time.time())
                    if is_new:
                        versions.append(version)
                resources.append((version.name, priced.quantity))
            start = to_ms(started)
            rows.append(
                ChargeRow(f.batch_id, f.job_id, f.attempt_id, project, f.user, resources, start, start)
            )
        await ledger.insert_rates(conn, versions)
        for row in rows:
            self.open[row.key] = OpenCharge(row, row.accrued_ms)
        return rows

    def _priced(self, facts: InstanceFacts, demand: AttemptDemand) -> list[PricedResource]:
        key = (facts, demand)
        priced = self._prices.get(key)
        if priced is None:
            if len(self._prices) >= PRICES_KEPT:
                self._prices.clear()
            priced = self._prices[key] = price_attempt(
                self.config, facts, demand, site_cpu_core_hour=self.settings.cost_per_core_hour
            )
        return priced

    async def _charge(
        self, conn: AsyncConnection, targets: dict[AttemptKey, tuple[int, bool]], opened: list[ChargeRow]
    ) -> set[str]:
        moves = [
            ChargeMove(key, self.open[key].accrued_ms, to, ended) for key, (to, ended) in targets.items()
        ]
        # A charge opened in this tick is written already moved (one INSERT, no UPDATE): short jobs.
        fresh = {row.key: row for row in opened}
        await ledger.open_charges(conn, [
            row.moved(*targets[row.key]) if row.key in targets else row for row in opened
        ])
        # Moves are all-or-LedgerConflict: on a conflict the tick fails and the driver rebuilds.
        await ledger.move_charges(conn, [m for m in moves if m.key not in fresh])
        by_batch: dict[tuple[int, str], int] = defaultdict(int)
        by_day: dict[tuple[str, str, str, str], int] = defaultdict(int)
        batches: set[int] = set()
        self._charged = {}
        touched_projects: set[str] = set()
        for m in moves:
            charge = self.open[m.key]
            row = charge.row
            for (day, name), usage in slice_usage(row.resources, m.from_ms, m.to_ms).items():
                by_batch[(row.batch_id, name)] += usage
                by_day[(row.billing_project, row.user, day, name)] += usage
                self.spend[row.billing_project] += cost_of(name, usage, self.book.by_name[name])
            self._charged[m.key] = (row, m.to_ms)
            batches.add(row.batch_id)
            touched_projects.add(row.billing_project)
            charge.accrued_ms = m.to_ms
            if m.ended:
                self.open.pop(m.key, None)
        await ledger.add_usage(conn, by_batch, by_day)
        await self._refresh_costs(conn, [m.key for m in moves], batches, by_batch)
        return touched_projects

    async def _refresh_costs(
        self, conn: AsyncConnection, charged: list[AttemptKey], batches: set[int],
        added: Mapping[tuple[int, str], int],
    ) -> None:
        """jobs.cost and batches.cost as the ledger says. A job charged only for its first attempt costs
        what is known here; a retried job adds what its other attempts cost (read from the ledger)."""
        by_job: dict[tuple[int, int], list[AttemptKey]] = defaultdict(list)
        for key in charged:
            by_job[(key[0], key[1])].append(key)
        retried = [k for keys in by_job.values() if keys != [(*keys[0][:2], 1)] for k in keys]
        usage = await ledger.other_attempts_usage(conn, retried) if retried else {}
        costs: dict[tuple[int, int], float] = {}
        for job, keys in by_job.items():
            lines = list(usage.get(job, []))
            for key in keys:
                row, accrued = self._charged[key]
                lines += [(name, q * (accrued - row.start_ms)) for name, q in row.resources]
            costs[job] = float(total(breakdown(lines, self.book.by_name)))
        await ledger.set_job_costs(conn, costs)
        await self._refresh_batch_costs(conn, sorted(batches), added)

    async def _refresh_batch_costs(
        self, conn: AsyncConnection, batches: list[int], added: Mapping[tuple[int, str], int]
    ) -> None:
        """batches.cost from the roll-up: `added` (this tick's usage by batch and resource, already written)
        is added to the roll-ups kept in memory; a batch not kept is read (with this tick's usage in it)."""
        kept = self._batch_usage
        unknown = [b for b in batches if b not in kept]
        for (batch_id, name), usage in added.items():
            if usage and batch_id in kept:
                lines = kept[batch_id]
                lines[name] = lines.get(name, 0) + usage
        if unknown:
            kept.update(await ledger.batch_usage_totals(conn, unknown))
        costs: dict[int, float] = {}
        for batch_id in batches:
            kept.move_to_end(batch_id)
            costs[batch_id] = float(total(breakdown(kept[batch_id].items(), self.book.by_name)))
        while len(kept) > BATCH_USAGE_KEPT:
            kept.popitem(last=False)
        await ledger.set_batch_costs(conn, costs)

    async def _enforce_limits(self, conn: AsyncConnection, projects: set[str]) -> list[int]:
        over = sorted(p for p in projects if is_over_limit(self.spend[p], self.limits.get(p)))
        if not over:
            return []
        doomed = await billing_store.uncancelled_running_batches(conn, over)
        for batch_id in doomed:
            await batch_store.set_batch_cancelled(conn, batch_id)
        if doomed:
            log.warning("spend limit reached by %s: cancelling batches %s", ", ".join(over), doomed)
        return doomed


def _key(f: AttemptInFlight) -> AttemptKey:
    return f.batch_id, f.job_id, f.attempt_id
