"""The driver: in-memory queues and instances rebuilt from the store, one writer loop (group commit).

Every state change of jobs goes through `_tick`, which gathers what happened since the last tick
(worker reports, commits, cancels, lost instances), applies it and the next scheduling decisions in
ONE transaction, and only then acknowledges workers and hands out assignments. If a tick fails, the
in-memory state is rebuilt from the store, which is the truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from corral.config import Settings
from corral.domain.attempts import RETURNED
from corral.domain.autoscaling import route_to_collection
from corral.domain.capacity import Resources, SiteCollection, largest, why_unplaceable
from corral.domain.placement import InstanceCapacity
from corral.domain.scheduling import ReadyJob, ReadyQueues, plan_placements, plan_reserved_placements
from corral.domain.states import JobState
from corral.domain.tokens import hash_token
from corral.driver.accounting import Accounting
from corral.driver.changes import TickListener, tick_changes
from corral.driver.collections import collection_limits
from corral.driver.completions import BatchCompletions
from corral.driver.inbox import ErroredAttempt, Inbox, Report, WorkerEvent
from corral.driver.instances import AttemptInFlight, InstanceState
from corral.driver.invariants import check_driver
from corral.driver.lookahead import LookaheadState, lookahead_mcpu
from corral.driver.pool_routing import PoolView, pool_view, routable_pools, route_unnamed
from corral.driver.recovery import recover, tick_alone
from corral.driver.services import ServiceCoordinator
from corral.driver.step import plan_tick
from corral.driver.unplaceable import UnplaceableJobs
from corral.gcpause import gc_paused
from corral.store import instances as instance_store
from corral.store import job_groups as job_group_store
from corral.store import scheduling as q
from corral.store import usage as usage_store
from corral.store.db import tick_engine
from corral.store.invariants import Violation
from corral.worker.protocol import AttemptKey, assignment_payload

log = logging.getLogger("corral.driver")
_MAX_VERDICTS = 4096  # distinct (pool, largest, job shape) answers kept


class Driver:
    def __init__(self, engine: AsyncEngine, settings: Settings) -> None:
        self.engine = engine
        # The tick's own engine on SQLite: its statements run without thread hand-offs (store/db.py).
        self.tick_engine = tick_engine(engine)
        self.settings = settings
        self.queues: dict[str, ReadyQueues] = defaultdict(ReadyQueues)
        self.running_mcpu: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        self.instances: dict[str, InstanceState] = {}
        self._by_token: dict[str, str] = {}
        self._inbox = Inbox()
        self._doomed: set[tuple[int, int]] = set()
        self.unplaceable = UnplaceableJobs()  # ready jobs their pool can never hold, with the reason
        self.site_collections: dict[str, SiteCollection] = {}
        self._largest: dict[str, Resources | None] = {}  # per pool, until an instance comes or goes
        self._verdicts: dict[tuple[object, ...], str | None] = {}  # _why_unplaceable's answers
        self._wake = asyncio.Event()
        self._tick_lock = asyncio.Lock()
        self._gone: dict[str, asyncio.Event] = {}  # instances someone waits to see forgotten
        self._tasks: list[asyncio.Task[None]] = []
        self._stopping = False
        self._closing = False  # shutting down: long polls return at once
        self.ticks = 0
        self.accounting = Accounting(settings)
        # Which queue a ready job joins: a job no instance of its pool can hold goes to a job-private
        # collection that can size one (the autoscaler decides the same from the same settings).
        collections = settings.instance_collections
        self._limits = {c.name: lim for c in collections if (lim := collection_limits(c)) is not None}
        self._job_private = [c.name for c in collections if c.kind == "job_private"]
        # pool_choice = "cheapest": jobs queued on the default pool (they name none) may go to any of these.
        self._routable = routable_pools(settings) if settings.pool_choice == "cheapest" else []
        self._route_reasons: dict[tuple[int, int], tuple[str, str]] = {}  # job -> (pool, why it waits)
        self._pool_view: PoolView | None = None  # taken once per tick, when a job is routed
        self.services = ServiceCoordinator(self)
        # Called after each committed tick with what it changed (the web pages' live updates).
        self.tick_listeners: list[TickListener] = []
        self.completions = BatchCompletions()  # clients waiting for a batch to complete
        self._placed: list[tuple[int, int]] = []

    # ------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await self._rebuild()
        self._tasks = [
            asyncio.create_task(self._writer_loop(), name="driver-writer"),
            asyncio.create_task(self._monitor_loop(), name="driver-monitor"),
        ]

    def close_polls(self) -> None:
        """Answer every open long poll now, so the HTTP server can stop without waiting them out."""
        self._closing = True
        for inst in self.instances.values():
            inst.notify()

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        for inst in self.instances.values():
            inst.notify()
        if self.tick_engine is not self.engine:
            await self.tick_engine.dispose()

    async def _rebuild(self) -> None:
        """In-memory state from the store: live instances, running attempts, ready queues."""
        now = time.time()
        async with self.engine.connect() as conn:
            conn = await conn.execution_options(readonly=True)
            async with conn.begin():
                live = await instance_store.live_instances(conn)
                running = await q.load_running_attempts(conn)
                ready = await q.load_ready_jobs(conn)
                cancelled = await q.cancelled_batches_with_work(conn)
                cancelled_groups = await job_group_store.cancelled_with_work(conn)
                await self.services.rebuild(conn)
                sites = await instance_store.site_collections(conn)
        self._pool_view = None
        self.queues.clear()
        self.running_mcpu.clear()
        self._doomed.clear()
        self.unplaceable.clear()
        self._largest.clear()
        self.site_collections = sites
        old = self.instances
        self.instances = {}
        self._by_token = {}
        for rec in live:
            inst = old.get(rec.name) or InstanceState(
                rec.name, rec.collection, rec.token_hash, rec.cores_mcpu, rec.memory_bytes
            )
            inst.gpus, inst.gpu_type = rec.gpus, rec.gpu_type
            inst.reserved_for = _job_key(rec.reserved_for)
            inst.cores_mcpu, inst.memory_bytes = rec.cores_mcpu, rec.memory_bytes
            inst.shape_mcpu = _int_or(rec.metadata.get("shape_mcpu"), rec.cores_mcpu)
            inst.shape_memory = _int_or(rec.metadata.get("shape_memory"), rec.memory_bytes)
            inst.active = rec.state == "active"
            inst.last_seen = now  # a grace period: workers reconnect after a driver restart
            inst.assigned.clear()
            inst.delivered.clear()
            inst.to_cancel.clear()
            self.instances[rec.name] = inst
            self._by_token[rec.token_hash] = rec.name
        for att in running:
            inst_or_none = self.instances.get(att.instance_name)
            pool = inst_or_none.pool if inst_or_none is not None else att.pool  # job-private: its collection
            flight = AttemptInFlight(
                att.batch_id, att.job_id, att.attempt_id, att.user, pool, att.cores_mcpu,
                att.memory_bytes, self._payload(att.batch_id, att.job_id, att.attempt_id, att.spec,
                                                att.cores_mcpu, att.memory_bytes),
                att.time_assigned, att.instance_name, att.time_started, att.gpus,
            )
            if inst_or_none is None:
                # Its instance is gone: end it as lost in the first tick.
                ghost = InstanceState(att.instance_name, att.pool, "", 0, 0)
                ghost.assigned[flight.key] = flight
                self.instances.setdefault(att.instance_name, ghost)
                self._inbox.lost[att.instance_name] = "instance no longer live"
                continue
            inst_or_none.assigned[flight.key] = flight
            self.running_mcpu[pool][att.user] += att.cores_mcpu
        self._enqueue_all(ready)
        flights = [f for i in self.instances.values() for f in i.assigned.values()]
        await self.accounting.rebuild(self.engine, flights)
        self._inbox.cancelled.update(cancelled)
        for batch_id, group_ids in cancelled_groups.items():
            self._inbox.cancelled_groups.setdefault(batch_id, set()).update(group_ids)
        for inst in self.instances.values():
            inst.notify()
        self._wake.set()
        log.info(
            "driver rebuilt: %d instances, %d running attempts, %d ready jobs",
            len(live), len(running), len(ready),
        )

    @staticmethod
    def _payload(
        batch_id: int, job_id: int, attempt_id: int, spec: dict[str, Any], cores: int, memory: int
    ) -> dict[str, Any]:
        spec = dict(spec)
        storage = int(spec.pop("storage_bytes", 0) or 0)
        return assignment_payload(AttemptKey(batch_id, job_id, attempt_id), spec, cores, memory, storage)

    def _enqueue(self, queued: q.QueuedJob) -> None:
        if queued.doomed and not queued.always_run:
            self._doomed.add(queued.job.key)
            return
        pool = queued.pool
        if self._routable and pool == self.settings.pool:
            pool = self._cheapest(queued.job)
        pool = route_to_collection(pool, queued.job, self._limits, self._job_private)
        self._queue(pool, queued.job)

    def _enqueue_all(self, queued_jobs: Iterable[q.QueuedJob]) -> None:
        """_enqueue for each job, in order, as a committed batch or a rebuild queues them (100,000 jobs of a
        few shapes): the collection a shape joins and whether it can ever be placed there are decided once
        per shape, and each collection's jobs are pushed in one go. Both are pure functions of the job's
        pool and shape until an instance comes or goes, which nothing here does. With pool_choice =
        "cheapest" each job's route depends on what was queued before it: one at a time, as _enqueue."""
        if self._routable:
            for queued in queued_jobs:
                self._enqueue(queued)
            return
        decided: dict[tuple[object, ...], tuple[str, str | None]] = {}
        to_push: dict[str, list[ReadyJob]] = {}
        for queued in queued_jobs:
            job = queued.job
            if queued.doomed and not queued.always_run:
                self._doomed.add((job.batch_id, job.job_id))
                continue
            shape = (queued.pool, job.cores_mcpu, job.memory_bytes, job.gpus, job.gpu_type)
            verdict = decided.get(shape)
            if verdict is None:
                pool = route_to_collection(queued.pool, job, self._limits, self._job_private)
                verdict = decided[shape] = (pool, self._why_unplaceable(pool, job))
            pool, reason = verdict
            if reason is not None:
                self.unplaceable.park(pool, job, reason)
            else:
                to_push.setdefault(pool, []).append(job)
        for pool, jobs in to_push.items():
            self.queues[pool].push_all(jobs)

    def _cheapest(self, job: ReadyJob) -> str:
        """`pool_choice = "cheapest"`: the cheapest pool that can start the job soonest (the default pool
        when none can ever run it: it waits there with the reason)."""
        queued = {p.name: sum(qs.ready_mcpu.values()) for p in self._routable
                  if (qs := self.queues.get(p.name)) is not None}
        if self._pool_view is None:
            self._pool_view = pool_view(self.instances.values())
        route = route_unnamed(
            job, self._routable, self._pool_view, queued_mcpu=queued,
            local_size=self._site_largest(self.settings.pool),
        )
        if route is None:
            return self.settings.pool
        self._route_reasons[job.key] = (route.pool, route.reason)
        return route.pool

    def _site_largest(self, pool: str) -> Resources | None:
        site = self.site_collections.get(pool)
        return site.largest if site is not None else None

    def _routing_reasons(self) -> dict[tuple[int, int], str | None]:
        """Why routed jobs still queued after scheduling wait where they were sent (saved with the tick)."""
        reasons, self._route_reasons = self._route_reasons, {}
        return {key: why for key, (pool, why) in reasons.items() if key in self.queues.get(pool, ())}

    def _queue(self, pool: str, job: ReadyJob) -> None:
        reason = self._why_unplaceable(pool, job)
        if reason is not None:
            self.unplaceable.park(pool, job, reason)
        else:
            self.queues[pool].push(job)

    def _park_unplaceable_heads(self, pool: str, queues: ReadyQueues) -> None:
        """Only the head of a user's FIFO can block it: a head that can never be placed steps aside."""
        for user in queues.users():
            while (job := queues.peek(user)) is not None:
                reason = self._why_unplaceable(pool, job)
                if reason is None:
                    break
                queues.pop(user)
                self.unplaceable.park(pool, job, reason)

    def _why_unplaceable(self, pool: str, job: ReadyJob) -> str | None:
        """A job its pool's largest instance (configured shape or live instance) cannot hold never runs."""
        site = self.site_collections.get(pool)
        if site is not None and site.kind != "pool":
            return None  # job-private collections are sized for each job
        if pool not in self._largest:
            shared = [i for i in self.instances.values() if i.pool == pool and i.reserved_for is None]
            sizes = [i.resources for i in shared]
            if site is not None and site.largest is not None:
                sizes.append(site.largest)
            self._largest[pool] = largest(sizes)
        biggest = self._largest[pool]
        # A pure function of (shape, pool, largest): remembered, as a committed batch queues 100,000 jobs
        # of a few shapes. Keyed by the largest instance itself, so a pool that changes needs no eviction.
        shape = (pool, biggest, job.cores_mcpu, job.memory_bytes, job.gpus, job.gpu_type)
        try:
            return self._verdicts[shape]
        except KeyError:
            if len(self._verdicts) >= _MAX_VERDICTS:
                self._verdicts.clear()
            verdict = self._verdicts[shape] = why_unplaceable(job.resources, pool, biggest)
            return verdict

    def _pool_changed(self, pool: str) -> None:
        """An instance of the pool came or grew: jobs that could not be placed there are checked again."""
        self._largest.pop(pool, None)
        for job in self.unplaceable.release(pool):
            self._queue(pool, job)
        self._wake.set()

    # ------------------------------------------------------------ hooks (API)

    async def batch_committed(self, batch_id: int) -> None:
        self._inbox.committed.add(batch_id)
        self._wake.set()

    async def batch_cancelled(self, batch_id: int) -> None:
        self._inbox.cancelled.add(batch_id)
        self._wake.set()

    def completion_of(self, batch_id: int) -> asyncio.Future[None]:
        return self.completions.completion_of(batch_id)

    async def job_groups_cancelled(self, batch_id: int, job_group_ids: set[int]) -> None:
        self._inbox.cancelled_groups.setdefault(batch_id, set()).update(job_group_ids)
        self._wake.set()

    # ------------------------------------------------------------ instances (providers)

    async def register_instance(
        self, *, name: str, pool: str, token: str, cores_mcpu: int, memory_bytes: int,
        metadata: dict[str, Any], gpus: int = 0, gpu_type: str | None = None,
        reserved_for: tuple[int, int] | None = None, cost_per_core_hour: float | None = None,
    ) -> None:
        """`cost_per_core_hour`: the shape's price per core-hour, kept in the instance's metadata, where
        billing reads it (the per-instance price hook, driver/accounting.py)."""
        token_hash = hash_token(token)
        if cost_per_core_hour is not None:
            metadata = {**metadata, "cost_per_core_hour": cost_per_core_hour}  # kept across restarts
        # The shape bounds what the worker may claim at activation, also after a driver restart.
        metadata = {**metadata, "shape_mcpu": cores_mcpu, "shape_memory": memory_bytes}
        reserved = f"{reserved_for[0]}.{reserved_for[1]}" if reserved_for else None
        async with self.engine.begin() as conn:
            await instance_store.create_instance(
                conn, name=name, collection=pool, cores_mcpu=cores_mcpu, memory_bytes=memory_bytes,
                token_hash=token_hash, metadata=metadata, now=time.time(), gpus=gpus, gpu_type=gpu_type,
                reserved_for=reserved,
            )
            self.site_collections = await instance_store.site_collections(conn)
        inst = InstanceState(name, pool, token_hash, cores_mcpu, memory_bytes)
        inst.gpus, inst.gpu_type, inst.reserved_for = gpus, gpu_type, reserved_for
        self.instances[name] = inst
        self._by_token[token_hash] = name
        if reserved_for is None:
            self._pool_changed(pool)

    async def retire_if_idle(self, name: str, reason: str) -> bool:
        """Between ticks: an instance without attempts stops taking work and is released (its loss is
        applied by the next tick); one that has work keeps it. Returns whether it was retired."""
        async with self._tick_lock:
            inst = self.instances.get(name)
            if inst is None or inst.assigned:
                return False
            inst.draining = True
            self.instance_lost(name, reason)
            return True

    async def wait_gone(self, name: str, timeout: float) -> None:
        """Until a tick has ended the instance's attempts and forgotten it (or `timeout` passed)."""
        event = self._gone.setdefault(name, asyncio.Event())
        try:
            async with self._tick_lock:
                if name not in self.instances:
                    return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), timeout)
        finally:
            self._gone.pop(name, None)

    def instance_lost(self, name: str, reason: str) -> None:
        if name in self.instances:
            self._inbox.lost[name] = reason
            self._wake.set()

    # ------------------------------------------------------------ worker protocol

    def authenticate(self, token: str) -> InstanceState | None:
        name = self._by_token.get(hash_token(token))
        inst = self.instances.get(name) if name else None
        if inst is not None:
            inst.last_seen = time.time()
        return inst

    async def activate(
        self, inst: InstanceState, cores_mcpu: int, memory_bytes: int, *, queues: bool = False
    ) -> None:
        """A worker says what it has; the driver believes it only up to the instance's registered shape."""
        if cores_mcpu > inst.shape_mcpu or memory_bytes > inst.shape_memory:
            log.warning(
                "instance %s claims %d mcpu and %d bytes; its shape allows %d mcpu and %d bytes: capped",
                inst.name, cores_mcpu, memory_bytes, inst.shape_mcpu, inst.shape_memory,
            )
        cores_mcpu, memory_bytes = min(cores_mcpu, inst.shape_mcpu), min(memory_bytes, inst.shape_memory)
        now = time.time()
        async with self.engine.begin() as conn:
            await instance_store.activate_instance(conn, inst.name, cores_mcpu, memory_bytes, now)
        inst.cores_mcpu, inst.memory_bytes = cores_mcpu, memory_bytes
        inst.active, inst.draining = True, False
        inst.queues, inst.lookahead = queues, LookaheadState()
        if inst.reserved_for is None:
            self._pool_changed(inst.pool)
        self._wake.set()

    async def note_instance(self, inst: InstanceState, facts: dict[str, Any]) -> None:
        """Add facts the instance's users should see (e.g. its jobs' isolation) to its metadata."""
        async with self.engine.begin() as conn:
            await instance_store.set_instance_metadata(conn, inst.name, facts)

    async def poll(self, inst: InstanceState, known: list[str], wait: float) -> dict[str, Any]:
        # A poll must return well within the heartbeat timeout: the next poll is the heartbeat.
        begun = time.monotonic()
        deadline = begun + max(0.0, min(wait, self.settings.heartbeat_timeout / 3))
        known_set = set(known)
        # Known attempts the driver does not have (and did not just release): the worker must drop them now.
        stale = {k for k in known_set if k not in inst.assigned and k not in inst.released}
        while True:
            inst.changed.clear()
            # Assignments an events reply handed (or is about to hand) since this poll began are the
            # worker's already: it learns them without this poll waking up (one round trip per batch).
            assign, cancel = inst.pending_for(known_set | inst.handed_since(begun),
                                              offer=not inst.events_in_flight)
            stop = self.services.stops_for(inst, known_set)
            gone = self.instances.get(inst.name) is not inst
            # Known attempts that ended while the poll waited were reported by this worker: no wake-up.
            urgent = [k for k in cancel if k in inst.to_cancel or k in stale]
            if assign or urgent or stop or gone or self._stopping or self._closing:
                inst.last_seen = time.time()
                return {"assign": assign, "cancel": cancel, "stop": stop, "shutdown": gone}
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                inst.last_seen = time.time()
                return {"assign": [], "cancel": cancel, "stop": [], "shutdown": False}
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(inst.changed.wait(), remaining)
            inst.last_seen = time.time()

    async def report_and_poll(
        self, inst: InstanceState, events: list[WorkerEvent], known: list[str]
    ) -> dict[str, Any]:
        """Events, then (once durable) what a poll would answer now: the tick that made them durable also
        placed jobs on the cores they freed, so a worker running short jobs gets its next ones here.

        Assignments another reply handed since this post arrived are left out: with two posts on the wire
        one tick answers both, and the worker needs its new jobs once. Were that reply lost, the worker
        posts again, and a post that arrives later gets every assignment it does not know."""
        begun = time.monotonic()
        inst.events_in_flight += 1
        try:
            acked = await self.report(inst, events)
        finally:
            inst.events_in_flight -= 1
        known_set = set(known)
        assign, cancel = inst.pending_for(known_set | inst.handed_since(begun))
        handed_at = time.monotonic()
        for payload in assign:
            inst.handed[payload["key"]] = handed_at
        ended = set(acked)  # completions just acknowledged: the worker knows they are over
        return {
            "ack": acked,
            "assign": assign,
            "cancel": [k for k in cancel if k in inst.to_cancel or k not in ended],
            "stop": self.services.stops_for(inst, known_set),
            "shutdown": self.instances.get(inst.name) is not inst,
        }

    async def report(self, inst: InstanceState, events: list[WorkerEvent]) -> list[str]:
        """Queue worker events for the next group commit; resolves once they are durable."""
        done: asyncio.Future[list[str]] = asyncio.get_running_loop().create_future()
        self._inbox.reports.append(Report(inst, events, done))
        self._wake.set()
        return await done

    async def deactivate(self, inst: InstanceState) -> None:
        inst.draining = True
        self.instance_lost(inst.name, "worker deactivated")

    # ------------------------------------------------------------ the writer loop

    async def _writer_loop(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            self._wake.clear()
            if self.settings.commit_interval > 0 and self._more_reports_may_come():
                await asyncio.sleep(self.settings.commit_interval)
            async with self._tick_lock:
                inbox, self._inbox = self._inbox, Inbox()
                try:
                    more = await self._tick(inbox)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    await self._recover(inbox, exc)
                    continue
            if more:
                self._wake.set()

    def _more_reports_may_come(self) -> bool:
        """Whether gathering for `commit_interval` can add reports to this tick. Only a tick that already
        has reports to commit gathers more (one commit for several workers' events); one woken by
        anything else (a batch committed, a cancel) runs at once: a new batch's first jobs would wait
        the whole interval for reports that may not come. Once every active instance's report is in,
        the wait would only delay their replies (and the jobs they hand out) and gather nothing."""
        if not self._inbox.reports:
            return False
        reporting = {id(r.instance) for r in self._inbox.reports}
        return any(i.active and id(i) not in reporting for i in self.instances.values())

    async def check_invariants(self) -> list[Violation]:
        """The store's invariants and the driver's memory against them (`corral admin check`)."""
        return await check_driver(self)

    def between_ticks(self) -> asyncio.Lock:
        """Held, no tick runs: memory and store agree (for the invariant checks)."""
        return self._tick_lock

    async def _recover(self, inbox: Inbox, exc: Exception) -> None:
        await recover(self, inbox, exc)

    async def _tick_alone(self, inbox: Inbox) -> Exception | None:
        return await tick_alone(self, inbox)

    async def _tick(self, inbox: Inbox) -> bool:
        now = time.time()
        self._pool_view = None
        plan = plan_tick(self.instances, inbox, now)
        for flight, started_at in plan.started:
            flight.time_started = started_at
        released, outcomes, lost_instances = plan.released, plan.outcomes, plan.lost_instances
        # Free what ended before planning, so this tick can reuse the cores.
        for flight in released:
            self._release(flight)
        for inst, seconds in plan.runs:
            inst.lookahead.ran(seconds)
        for inst in plan.gave_back:
            inst.lookahead.gave_back(now)
        for inst in lost_instances:
            self.instances.pop(inst.name, None)
            self._largest.pop(inst.pool, None)
            inst.active = False
            inst.notify()

        if inbox.committed:
            await self._load_committed(inbox.committed)
        async with self.tick_engine.begin() as conn:
            await q.mark_started(conn, plan.start_times)
            await usage_store.insert_samples(conn, plan.samples)
            cascade = await q.end_attempts(conn, outcomes, now)
            await self.services.apply(conn, plan.serving, released, outcomes, cascade, now)
            to_cancel = set(inbox.cancelled) | set(cascade.batches_to_cancel)
            to_cancel_all = to_cancel | set(inbox.cancelled_groups)
            group_cancels = {b: set(ids) for b, ids in inbox.cancelled_groups.items()}
            failed = {o.batch_id for o in outcomes if o.job_state in (JobState.FAILED, JobState.ERROR)}
            if failed:  # job groups with cancel_after_n_failures
                over = await job_group_store.cancel_over_failure_limit(conn, failed)
                for batch_id, group_ids in over.items():
                    group_cancels.setdefault(batch_id, set()).update(group_ids)
            for batch_id, group_ids in group_cancels.items():
                to_cancel.update(await self._cancel_jobs(conn, batch_id, cascade, now, group_ids))
            await self._apply_cancels(conn, to_cancel, cascade, now)
            doomed: list[tuple[int, int]] = []
            if self._doomed:
                doomed, self._doomed = sorted(self._doomed), set()
                cascade.merge(await q.cancel_ready_jobs(conn, doomed, now))
            for queued in cascade.ready + cascade.requeued:
                self._enqueue(queued)
            # Cancellations may doom more ready jobs; they are cancelled next tick.
            assignments = await self._schedule(conn, now)
            reasons = self.unplaceable.take_reasons()
            if self._route_reasons:
                reasons = {**self._routing_reasons(), **reasons}  # a job that cannot be placed: that reason
            await q.save_waiting_reasons(conn, reasons)
            for inst in lost_instances:
                await instance_store.set_instance_state(conn, inst.name, "inactive", now)
            await self._save_heartbeats(conn, now)
            self.accounting.attempts_returned(
                (o.batch_id, o.job_id, o.attempt_id) for o in cascade.ended if o.end_reason == RETURNED
            )
            self.accounting.attempts_ended(
                (o.batch_id, o.job_id, o.attempt_id, o.time_ended) for o in cascade.ended
                if o.end_reason != RETURNED
            )
            over_limit = await self.accounting.settle(conn, now)
        self._inbox.cancelled.update(over_limit)
        for inst in lost_instances:
            if inst.name in self._gone:
                self._gone[inst.name].set()
        for report, keys in plan.acks:
            if not report.done.done():
                report.done.set_result(keys)
        self.completions.completed(cascade.completed_batches)
        for inst in assignments:
            inst.notify()
        self.ticks += 1
        placed, self._placed = self._placed, []
        if self.tick_listeners:
            changes = tick_changes(
                jobs=[(b, j) for b, j, _a, _t in plan.start_times] + placed
                + doomed + [qj.job.key for qj in cascade.ready + cascade.requeued],
                whole_batches=set(inbox.committed) | to_cancel_all,
                outcomes=cascade.ended or outcomes,
            )
            for listener in self.tick_listeners:
                listener(changes)
        return bool(self._doomed) or bool(self._inbox)

    async def _load_committed(self, batch_ids: set[int]) -> None:
        """Queue the Ready jobs of newly committed batches. Read outside the tick's write transaction: a
        100,000-job batch takes a while to read, and on SQLite the write lock would keep every API write
        (the next batch's creation, its bunches) waiting meanwhile. Nothing but this (locked) tick moves
        a Ready job, and the queues ignore a job queued twice."""
        # The collector is paused meanwhile: the rows and queue entries of 100,000 jobs otherwise trigger
        # repeated collections that scan every live object (most of the queueing's time).
        with gc_paused():
            async with self.engine.connect() as conn:
                conn = await conn.execution_options(readonly=True)
                for batch_id in sorted(batch_ids):
                    self._enqueue_all(await q.load_ready_jobs(conn, batch_id))

    def _release(self, flight: AttemptInFlight) -> None:
        inst = self.instances.get(flight.instance_name)
        if inst is not None:
            inst.forget(flight.key)
        users = self.running_mcpu[flight.pool]
        users[flight.user] -= flight.cores_mcpu
        if users[flight.user] <= 0:
            del users[flight.user]

    async def _apply_cancels(
        self, conn: AsyncConnection, batch_ids: set[int], cascade: q.CascadeResult, now: float
    ) -> None:
        while batch_ids:
            batch_id = batch_ids.pop()
            batch_ids.update(await self._cancel_jobs(conn, batch_id, cascade, now))

    async def _cancel_jobs(
        self, conn: AsyncConnection, batch_id: int, cascade: q.CascadeResult, now: float,
        job_group_ids: set[int] | None = None,
    ) -> set[int]:
        """Cancel the batch's unfinished jobs (of those job groups only, when given); returns other
        batches the cascade says to cancel."""
        result = await q.cancel_batch_jobs(conn, batch_id, now, job_group_ids=job_group_ids)
        self.accounting.attempts_ended((b, j, a, now) for b, j, a, _ in result.killed)
        if result.more:  # the rest in the next tick: no API write waits behind one huge cancel
            if job_group_ids is None:
                self._inbox.cancelled.add(batch_id)
            else:
                self._inbox.cancelled_groups.setdefault(batch_id, set()).update(job_group_ids)
        for _b, _j, _a, instance_name in result.killed:
            inst = self.instances.get(instance_name)
            if inst is None:
                continue
            key = str(AttemptKey(_b, _j, _a))
            if key in inst.assigned:
                if key in inst.delivered:
                    inst.to_cancel.add(key)
                else:
                    self._release(inst.assigned[key])
                inst.notify()
        for queues in self.queues.values():
            queues.remove_where(batch_id)
        self.unplaceable.drop_batch(batch_id)
        if job_group_ids is None:
            self._doomed = {k for k in self._doomed if k[0] != batch_id}
        # always_run jobs of the batch stay queued; re-read them from the store.
        for queued in await q.load_ready_jobs(conn, batch_id):
            self._enqueue(queued)
        cascade.merge(result.cascade)
        return {b for b in result.cascade.batches_to_cancel if b != batch_id}

    async def _schedule(self, conn: AsyncConnection, now: float) -> set[InstanceState]:
        notified: set[InstanceState] = set()
        for pool, queues in self.queues.items():
            self._park_unplaceable_heads(pool, queues)
            if not len(queues):
                continue
            pool_instances = [i for i in self.instances.values() if i.pool == pool and i.schedulable]
            capacities = [
                InstanceCapacity(i.name, i.free_mcpu + lookahead_mcpu(i, now), i.free_memory, i.free_gpus,
                                 i.gpu_type)
                for i in pool_instances if i.reserved_for is None
            ]
            reserved = {
                i.reserved_for: InstanceCapacity(i.name, i.free_mcpu, i.free_memory, i.free_gpus, i.gpu_type)
                for i in pool_instances if i.reserved_for is not None
            }
            placements = plan_reserved_placements(queues, reserved) if reserved else []
            constrained, held = self.services.place_constrained(queues, capacities)
            placements += constrained
            placements += plan_placements(queues, capacities, self.running_mcpu[pool])
            for job in held:
                queues.push(job)
            if not placements:
                continue
            specs = await q.start_attempts(conn, [(p.job, p.instance) for p in placements], now)
            for placement in placements:
                job = placement.job
                spec = specs.get(job.key)
                if spec is None:
                    continue  # stale: the store did not move it
                attempt_id = job.n_attempts + 1
                unreadable: Exception | None = None
                try:
                    payload = self._payload(job.batch_id, job.job_id, attempt_id, spec, job.cores_mcpu,
                                            job.memory_bytes)
                except Exception as exc:  # one job's spec must not stop the others being scheduled
                    payload, unreadable = {}, exc
                flight = AttemptInFlight(job.batch_id, job.job_id, attempt_id, job.user, pool,
                                         job.cores_mcpu, job.memory_bytes, payload, now, placement.instance,
                                         gpus=job.gpus)
                inst = self.instances[placement.instance]
                inst.assigned[flight.key] = flight
                self._placed.append(job.key)
                if unreadable is not None:
                    inst.to_cancel.add(flight.key)  # never sent; ended in Error next tick
                    reason = f"the driver could not build this job's assignment: {unreadable!r}"
                    self._inbox.errored.append(ErroredAttempt(inst.name, flight.key, reason))
                self.running_mcpu[pool][job.user] += job.cores_mcpu
                self.accounting.attempt_assigned(flight)
                notified.add(inst)
        return notified

    async def _save_heartbeats(self, conn: AsyncConnection, now: float) -> None:
        due = [
            (i.name, i.last_seen) for i in self.instances.values()
            if i.active and i.last_seen - i.heartbeat_saved > 5.0
        ]
        if due:
            await instance_store.record_heartbeats(conn, due)
            for name, seen in due:
                self.instances[name].heartbeat_saved = seen

    async def _monitor_loop(self) -> None:
        """Declare instances lost when they stop calling in."""
        while not self._stopping:
            await asyncio.sleep(min(1.0, self.settings.heartbeat_timeout / 4))
            now = time.time()
            for inst in list(self.instances.values()):
                if inst.active and now - inst.last_seen > self.settings.heartbeat_timeout:
                    log.warning("instance %s silent for %.0fs: lost", inst.name, now - inst.last_seen)
                    self.instance_lost(inst.name, f"no heartbeat for {self.settings.heartbeat_timeout:.0f}s")


def _int_or(value: object, default: int) -> int:
    return value if isinstance(value, int) and value > 0 else default


def _job_key(text: str | None) -> tuple[int, int] | None:
    if not text:
        return None
    batch_id, job_id = text.split(".")
    return int(batch_id), int(job_id)
