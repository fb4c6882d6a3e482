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
from corral.domain.tokens import new_token
from corral.driver.collection_health import CollectionHealth, gone_reason, instance_name
from corral.driver.collections import collection_limits, collection_shape, job_shape
from corral.driver.driver import Driver
from corral.driver.health import (
    adopt_instances,
    keep_failure_metadata,
    record_health,
    save_metadata,
    use_instance_rate,
)
from corral.providers.base import (
    BoundedProvider,
    InstanceProvider,
    InstanceRequest,
    MachineShape,
    ProviderInstance,
)
from corral.store import instances as instance_store
from corral.store.system_view import set_instance_end_reason

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
    serves: str | None = None  # the user of the one job a job-private instance runs
    activated: bool = False  # its worker called in (until then, its loss is a failure of the collection)
    end_reason: str | None = None
    retiring: bool = False  # asked the driver to retire it (it does so only if idle)


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
        self.health = CollectionHealth()
        self._loop: asyncio.Task[None] | None = None

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
        await self.health.flush(self.driver.engine)
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
            if inst is not None and inst.active and not m.activated:
                m.activated = True
                self.health.recovered(collection)
            if found is not None and record_health(self.driver, m.name, m.metadata, found.metadata):
                self._spawn_health_write(m)
            if found is not None and found.status == "gone":
                self._lose(m, gone_reason(found, activated=m.activated))
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
        views = [self._view(m) for m in self._of(collection) if not m.retiring]
        for name in pool_instances_to_release(limits, views, now):
            self._retire(self._managed[name], f"idle for {limits.idle_seconds:.0f}s: released")
        if not self.health.allows(collection, now):
            return
        views = [self._view(m) for m in self._of(collection) if not m.retiring]
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
                self._lose(m, "its job has ended", deliberate=True)
        mine = self._of(collection)
        if not self.health.allows(collection, time.time()):
            return
        served = {m.reserved_for for m in mine if m.reserved_for is not None}
        for job in private_jobs_to_serve(
            queued, served, live=len(mine), max_instances=col.max_instances,
            max_new=col.max_new_instances_per_loop,
        ):
            shape = job_shape(job, col)
            if self._capacity(collection, shape) > 0:
                self._create(collection, shape, job.key, job.user)

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

    def _create(
        self, collection: str, shape: MachineShape, reserved_for: tuple[int, int] | None,
        user: str | None = None,
    ) -> None:
        name = instance_name(collection, user)
        m = _Managed(name, collection, time.time(), reserved_for=reserved_for, serves=user)
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
            request = InstanceRequest(m.name, m.collection, shape, token, self.driver_url, serves=m.serves)
            metadata = await provider.create_instance(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await keep_failure_metadata(self.driver, m.name, exc)
            self._creating.pop(m.name, None)
            self._lose(m, f"could not be created: {exc}")
            return
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

    def _retire(self, m: _Managed, reason: str) -> None:
        """Ask the driver to retire an idle instance (between its ticks, so no work lands on it meanwhile);
        if it took work since, it stays."""
        m.retiring = True

        async def retire() -> None:
            if await self.driver.retire_if_idle(m.name, reason):
                log.info("instance %s of %s: %s", m.name, m.collection, reason)
                self._release(m)
            else:
                m.retiring, m.idle_since = False, None

        task = asyncio.create_task(retire(), name=f"retire-{m.name}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def _lose(self, m: _Managed, reason: str, *, deliberate: bool = False) -> None:
        """End its attempts as lost (jobs are retried), then delete it through the provider. An instance
        whose worker never called in is a failure of its collection (backoff; logged once there)."""
        m.end_reason = reason
        if m.activated or deliberate:
            log.info("instance %s of %s: %s", m.name, m.collection, reason)
        else:
            self.health.failed(m.collection, reason, time.time())
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
        # goes and it is marked deleted.
        await self.driver.wait_gone(m.name, timeout=10.0)
        try:
            await self.providers[m.collection].delete_instance(m.name, dict(m.metadata))
        except Exception:
            log.exception("deleting instance %s failed", m.name)
            return
        async with self.driver.engine.begin() as conn:
            await instance_store.set_instance_state(conn, m.name, "deleted", time.time())
            if m.end_reason:
                await set_instance_end_reason(conn, m.name, m.end_reason)
