"""The autoscaler: for each instance collection, create and release instances through its provider.

One loop (a small service class). Every tick it asks each provider for its instances ONCE (one `squeue`,
one sweep of SSH hosts), ends the attempts of instances the provider reports gone (jobs are retried),
then sizes pools from users' fair shares (domain/autoscaling.py) and brings up one instance per ready
job of a job-private collection, deleting it when its job has ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field

from corral.config import Settings
from corral.domain.autoscaling import (
    InstanceView,
    PoolLimits,
    pool_instances_to_create,
    pool_instances_to_release,
    private_jobs_to_serve,
)
from corral.domain.fair_share import UserDemand
from corral.domain.scheduling import ReadyJob
from corral.domain.tokens import new_token
from corral.driver.collections import collection_limits, collection_shape, job_shape
from corral.driver.driver import Driver
from corral.driver.health import (
    adopt_instances,
    keep_failure_metadata,
    record_health,
    save_metadata,
    use_instance_rate,
)
from corral.driver.pool_routing import cheapest_pool
from corral.providers.base import (
    BoundedProvider,
    InstanceProvider,
    InstanceRequest,
    MachineShape,
    ProviderInstance,
)
from corral.store import instances as instance_store

log = logging.getLogger("corral.autoscaler")

LISTING_GRACE = 10.0  # seconds a created instance may be missing from the provider's listing


@dataclass
class _Managed:
    name: str
    collection: str
    time_created: float
    metadata: dict[str, object] = field(default_factory=dict)
    created: bool = False  # create_instance has returned
    reserved_for: tuple[int, int] | None = None
    running_since: float | None = None  # the provider reported it running (a queued SLURM job is not)
    idle_since: float | None = None
    drain_tick: int | None = None  # the driver's tick when its release began


class Autoscaler:
    def __init__(
        self,
        driver: Driver,
        settings: Settings,
        providers: Mapping[str, InstanceProvider],  # by collection name
        *,
        interval: float = 1.0,
        startup_timeout: float = 600.0,
        list_timeout: float = 120.0,
    ) -> None:
        self.driver = driver
        self.settings = settings
        self.collections = {c.name: c for c in settings.instance_collections}
        self.providers = dict(providers)
        self.limits = {n: lim for n, c in self.collections.items() if (lim := collection_limits(c))}
        self.interval = interval
        self.startup_timeout = startup_timeout
        self.list_timeout = list_timeout
        self.driver_url = ""
        self.ticks = 0
        self._managed: dict[str, _Managed] = {}
        self._creating: dict[str, asyncio.Task[None]] = {}
        self._background: set[asyncio.Task[None]] = set()
        self._backoff_until: dict[str, float] = {}
        self._failures: dict[str, int] = {}
        self._loop: asyncio.Task[None] | None = None
        self._unplaceable: set[tuple[object, ...]] = set()

    # ------------------------------------------------------------ lifecycle

    async def start(self, driver_url: str, *, run_loop: bool = True) -> None:
        self.driver_url = driver_url
        async with self.driver.engine.begin() as conn:
            for col in self.collections.values():
                await instance_store.ensure_collection(
                    conn, col.name, kind=col.kind, provider=col.provider, config=col.model_dump(mode="json")
                )
            live = [rec for col in self.collections for rec in await instance_store.live_instances(conn, col)]
        for rec in live:  # adopted: the first listing says whether they still exist
            key = rec.reserved_for.split(".") if rec.reserved_for else None
            self._managed[rec.name] = _Managed(
                rec.name, rec.collection, time.time(), dict(rec.metadata), created=True,
                reserved_for=(int(key[0]), int(key[1])) if key else None,
            )
        for provider in self.providers.values():
            await provider.start(driver_url)
        await adopt_instances(self.providers, live)
        self.driver.route_pool = self.route_pool
        self._reroute_queued()
        if run_loop:
            self._loop = asyncio.create_task(self._run(), name="autoscaler")

    async def stop(self, *, release: bool = True) -> None:
        """Stop the loop; with `release`, delete every instance (a restart would find them gone and retry)."""
        if self._loop is not None:
            self._loop.cancel()
            await asyncio.gather(self._loop, return_exceptions=True)
        for task in self._creating.values():
            task.cancel()
        await asyncio.gather(*self._creating.values(), return_exceptions=True)
        if release:
            for m in self._managed.values():
                self.driver.instance_lost(m.name, "the server is stopping")
            await asyncio.gather(
                *(self._delete_now(m) for m in list(self._managed.values())), return_exceptions=True
            )
        await asyncio.gather(*self._background, return_exceptions=True)
        for provider in self.providers.values():
            with contextlib.suppress(Exception):
                await provider.stop()

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("autoscaler tick failed")
            await asyncio.sleep(self.interval)

    # ------------------------------------------------------------ routing (called by the driver)

    def route_pool(self, pool: str, job: ReadyJob) -> str:
        """A job that fits no instance of its pool goes to a job-private collection that can size it."""
        if pool == self.settings.pool and self.settings.pool_choice == "cheapest":
            pool = cheapest_pool(job, settings=self.settings, collections=self.collections,
                                 limits=self.limits, instances=self.driver.instances, can_grow=self._can_grow)
        limits = self.limits.get(pool)
        col = self.collections.get(pool)
        if col is None or col.kind != "pool" or limits is None or limits.fits(job):
            return pool
        for other in self.collections.values():
            if other.kind == "job_private":
                cap = self.limits.get(other.name)
                if cap is None or cap.fits(job):
                    return other.name
        request = (pool, job.cores_mcpu, job.memory_bytes, job.gpus, job.gpu_type)
        if request not in self._unplaceable:  # once per kind of request: say why such jobs wait
            self._unplaceable.add(request)
            log.warning(
                "jobs of pool %s needing %.3g cores, %d bytes, %d GPUs (%s) fit no instance of it and no "
                "job-private collection can take them: they wait", pool, job.cores_mcpu / 1000,
                job.memory_bytes, job.gpus, job.gpu_type or "any type",
            )
        return pool

    def _can_grow(self, collection: str) -> bool:
        limits, shape = self.limits.get(collection), collection_shape(self.collections[collection])
        return (limits is not None and shape is not None and len(self._of(collection)) < limits.cap
                and self._capacity(collection, shape) > 0)

    def _reroute_queued(self) -> None:
        for pool, queues in list(self.driver.queues.items()):
            for job in list(queues):
                target = self.route_pool(pool, job)
                if target != pool and queues.take(job.key) is not None:
                    self.driver.queues[target].push(job)

    # ------------------------------------------------------------ the tick

    async def tick(self) -> None:
        now = time.time()
        listings = await asyncio.gather(
            *(self._list(name) for name in self.collections), return_exceptions=False
        )
        for name, listing in zip(self.collections, listings, strict=True):
            if listing is None:
                continue  # the provider could not answer: change nothing this tick
            self._reconcile(name, listing, now)
            if self.collections[name].kind == "pool":
                self._scale_pool(name, now)
            else:
                self._serve_private(name)
        self.ticks += 1

    async def _list(self, collection: str) -> list[ProviderInstance] | None:
        try:
            return await asyncio.wait_for(self.providers[collection].list_instances(), self.list_timeout)
        except Exception:
            log.exception("listing instances of %s failed", collection)
            return None

    def _of(self, collection: str) -> list[_Managed]:
        return [m for m in self._managed.values() if m.collection == collection]

    def _reconcile(self, collection: str, listing: list[ProviderInstance], now: float) -> None:
        seen = {p.name: p for p in listing}
        for m in self._of(collection):
            inst = self.driver.instances.get(m.name)
            found = seen.get(m.name)
            if found is not None and found.status == "running" and m.running_since is None:
                m.running_since = now
            if found is not None and record_health(self.driver, m.name, m.metadata, found.metadata):
                self._spawn_health_write(m)
            if found is not None and found.status == "gone":
                self._lose(m, found.reason or "gone")
            elif m.created and found is None and now - m.time_created > LISTING_GRACE:
                self._lose(m, "the provider no longer lists it")
            elif m.created and inst is None:
                self._release(m)  # the driver dropped it (silent, deactivated)
            elif (
                inst is not None and not inst.active and m.running_since is not None
                and now - m.running_since > self.startup_timeout
            ):
                self._lose(m, f"its worker did not call in within {self.startup_timeout:.0f}s of starting")
            elif inst is not None and inst.active:
                if inst.assigned:
                    m.idle_since = None
                elif m.idle_since is None:
                    m.idle_since = now

    def _scale_pool(self, collection: str, now: float) -> None:
        limits = self.limits.get(collection)
        if limits is None:
            return
        for m in self._of(collection):
            if m.drain_tick is None:
                continue
            inst = self.driver.instances.get(m.name)
            if inst is None:
                continue
            if inst.assigned:  # a tick placed work on it before draining began: keep it
                inst.draining, m.drain_tick, m.idle_since = False, None, None
            elif self.driver.ticks >= m.drain_tick + 2:
                self._lose(m, f"idle for {limits.idle_seconds:.0f}s: released")
        views = [self._view(m) for m in self._of(collection) if m.drain_tick is None]
        for name in pool_instances_to_release(limits, views, now):
            inst = self.driver.instances.get(name)
            if inst is not None:
                # Draining first: the writer loop stops placing on it; released once a full tick saw that.
                inst.draining = True
                self._managed[name].drain_tick = self.driver.ticks
        if now < self._backoff_until.get(collection, 0.0):
            return
        views = [self._view(m) for m in self._of(collection) if m.drain_tick is None]
        demands, ready_gpus = self._demands(collection, limits, views)
        shape = collection_shape(self.collections[collection])
        assert shape is not None
        wanted = pool_instances_to_create(limits, demands, views, ready_gpus=ready_gpus)
        for _ in range(min(wanted, self._capacity(collection, shape))):
            self._create(collection, shape, None)

    def _demands(
        self, collection: str, limits: PoolLimits, views: list[InstanceView]
    ) -> tuple[dict[str, UserDemand], int]:
        """Users' ready cores (and GPUs) that an instance of this pool could run.

        Jobs no instance of the shape can run do not grow the pool (they wait for a job-private collection
        or a config change). The scan stops once demand exceeds what the pool could still add.
        """
        queues = self.driver.queues.get(collection)
        if queues is None or not len(queues):
            return {}, 0
        running = self.driver.running_mcpu.get(collection, {})
        room = (limits.cap - len(views)) * limits.cores_mcpu + sum(v.free_mcpu for v in views)
        ready: dict[str, int] = {}
        gpus = total = 0
        for job in queues:
            if not limits.fits(job):
                continue
            ready[job.user] = ready.get(job.user, 0) + job.cores_mcpu
            gpus += job.gpus
            total += job.cores_mcpu
            if total > room and (not limits.gpus or gpus > limits.gpus * limits.cap):
                break
        return {u: UserDemand(running.get(u, 0), mcpu) for u, mcpu in ready.items()}, gpus

    def _serve_private(self, collection: str) -> None:
        col = self.collections[collection]
        queues = self.driver.queues.get(collection)
        queued = list(queues) if queues is not None else []
        queued_keys = {j.key for j in queued}
        mine = self._of(collection)
        for m in mine:
            inst = self.driver.instances.get(m.name)
            if m.reserved_for not in queued_keys and (inst is None or not inst.assigned):
                self._lose(m, "its job has ended")
        mine = self._of(collection)
        served = {m.reserved_for for m in mine if m.reserved_for is not None}
        for job in private_jobs_to_serve(
            queued, served, live=len(mine), max_instances=col.max_instances,
            max_new=col.max_new_instances_per_loop,
        ):
            shape = job_shape(job, col)
            if self._capacity(collection, shape) > 0:
                self._create(collection, shape, job.key)

    def _capacity(self, collection: str, shape: MachineShape) -> int:
        """Instances of `shape` the provider can still make (unbounded unless it keeps an inventory)."""
        provider = self.providers[collection]
        if isinstance(provider, BoundedProvider):
            pending = sum(1 for name in self._creating if self._managed[name].collection == collection)
            return max(0, provider.capacity(shape) - pending)
        return 1 << 30

    def _view(self, m: _Managed) -> InstanceView:
        inst = self.driver.instances.get(m.name)
        if inst is None or not inst.active:
            return InstanceView(m.name, pending=True, free_mcpu=0)
        return InstanceView(
            m.name, pending=False, free_mcpu=max(0, inst.free_mcpu), free_gpus=max(0, inst.free_gpus),
            busy=bool(inst.assigned), idle_since=m.idle_since,
        )

    # ------------------------------------------------------------ create and delete

    def _create(self, collection: str, shape: MachineShape, reserved_for: tuple[int, int] | None) -> None:
        name = f"{collection}-{uuid.uuid4().hex[:8]}"
        m = _Managed(name, collection, time.time(), reserved_for=reserved_for)
        self._managed[name] = m
        self._creating[name] = asyncio.create_task(self._bring_up(m, shape), name=f"create-{name}")

    async def _bring_up(self, m: _Managed, shape: MachineShape) -> None:
        provider = self.providers[m.collection]
        token = new_token()
        try:
            await self.driver.register_instance(
                name=m.name, pool=m.collection, token=token, cores_mcpu=int(shape.cores * 1000),
                memory_bytes=shape.memory_bytes, metadata={"provider": provider.name, "shape": shape.name},
                gpus=shape.gpus, gpu_type=shape.gpu_type, reserved_for=m.reserved_for,
                cost_per_core_hour=shape.price_per_hour / shape.cores if shape.price_per_hour else None,
            )
            request = InstanceRequest(m.name, m.collection, shape, token, self.driver_url)
            metadata = await provider.create_instance(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failures = self._failures.get(m.collection, 0) + 1
            self._failures[m.collection] = failures
            self._backoff_until[m.collection] = time.time() + min(60.0, 0.5 * 2**failures)
            log.warning("could not create instance %s of %s: %s", m.name, m.collection, exc)
            await keep_failure_metadata(self.driver, m.name, exc)
            self._creating.pop(m.name, None)
            self._lose(m, f"could not be created: {exc}")
            return
        self._failures[m.collection] = 0
        self._creating.pop(m.name, None)
        m.metadata = {"provider": provider.name, "shape": shape.name, **metadata}
        if shape.price_per_hour and "cost_per_core_hour" not in metadata:  # a rented host's own price wins
            m.metadata["cost_per_core_hour"] = shape.price_per_hour / shape.cores
        m.created, m.time_created = True, time.time()
        async with self.driver.engine.begin() as conn:
            await instance_store.set_instance_metadata(conn, m.name, dict(m.metadata))
        use_instance_rate(self.driver, m.name, m.metadata)
        if m.name not in self._managed:
            await self._delete_now(m)  # released while it was being created

    def _spawn_health_write(self, m: _Managed) -> None:
        task = asyncio.create_task(save_metadata(self.driver, m.name, dict(m.metadata)))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _lose(self, m: _Managed, reason: str) -> None:
        """End its attempts as lost (jobs are retried), then delete it through the provider."""
        log.info("instance %s of %s: %s", m.name, m.collection, reason)
        self.driver.instance_lost(m.name, reason)
        self._release(m)

    def _release(self, m: _Managed) -> None:
        if self._managed.pop(m.name, None) is None:
            return
        creating = self._creating.pop(m.name, None)
        if creating is not None:
            creating.cancel()
        task = asyncio.create_task(self._delete_now(m), name=f"delete-{m.name}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _delete_now(self, m: _Managed) -> None:
        # The writer loop first ends its attempts (instance_lost) and marks it inactive; then the machine
        # goes and it is marked deleted. Two ticks on: the one in flight, then the one that saw the loss.
        seen = self.driver.ticks
        for _ in range(200):
            if m.name not in self.driver.instances and self.driver.ticks >= seen + 2:
                break
            await asyncio.sleep(0.05)
        try:
            await self.providers[m.collection].delete_instance(m.name, dict(m.metadata))
        except Exception:
            log.exception("deleting instance %s failed", m.name)
            return
        async with self.driver.engine.begin() as conn:
            await instance_store.set_instance_state(conn, m.name, "deleted", time.time())
