"""The vastai provider: rented GPU hosts the autoscaler drives like any instance collection.

Create: search with the collection's filters, rank (offers.py), rent one offer at a time (a lock: two
creates never take the same offer; a gone offer is skipped), label it `<prefix>:<collection>:<name>`, wait
for `running` with a deadline, SSH in, check the GPUs, prepare, install and start the worker (host.py). A
failed step destroys the instance and bad-lists its machine, then the next offer is tried.
List: ONE listing call per tick maps vast states to ours (offline, unknown, outbid → gone with the reason),
destroys labelled instances nobody accounts for, and reports unhealthy hosts gone.
Restart: `adopt` reconnects to the instances the store knows and destroys the rest of ours.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.errors import CorralError
from corral.providers.base import InstanceRequest, MachineShape, ProviderInstance, worker_environment
from corral.providers.config import InstanceCollectionConfig
from corral.providers.health import HealthThresholds, watch_health
from corral.providers.prepare import PrepareConfig, prepare_or_raise
from corral.providers.ssh.bundle import WorkerBundle, worker_bundle
from corral.providers.ssh.options import SshHost, SshOptions
from corral.providers.vastai import host as remote
from corral.providers.vastai.adoption import adopt, sweep
from corral.providers.vastai.api import OfferGone, RentRejected, RentTimedOut, VastApiError, VastClient
from corral.providers.vastai.offers import BadHosts, offer_price, rank_offers, search_query
from corral.providers.vastai.options import VastOptions, parse_options
from corral.providers.vastai.rented import Rented, gone_reason, listing_reason

if TYPE_CHECKING:
    from corral.config import Settings

log = logging.getLogger("corral.providers.vastai")

FAILED_STATES = {"exited", "stopped", "frozen", "offline", "unknown"}
OCI_FAILURE = "OCI runtime create failed"


class NoOfferFits(CorralError):
    status_code = 409


class BringUpFailed(CorralError):
    def __init__(self, message: str, metadata: dict[str, Any]) -> None:
        super().__init__(message)
        self.metadata = metadata


class VastProvider:
    name = "vastai"

    def __init__(
        self,
        collection: InstanceCollectionConfig,
        options: VastOptions,
        api_key: str,
        *,
        other_collections: set[str] | None = None,
        worker_env: Mapping[str, str] | None = None,
    ) -> None:
        self.collection = collection.name
        self.worker_env = dict(worker_env or {})  # from the server's settings (base.worker_environment)
        self.config = collection
        self.options = options
        self.prepare: PrepareConfig | None = collection.prepare
        self.thresholds = HealthThresholds.model_validate(options.health)
        self.client = VastClient(
            options.url,
            api_key,
            timeout=options.request_timeout,
            retries=options.retries,
            retry_base=options.retry_base_seconds,
        )
        self.ssh_options = SshOptions(
            keepalive_interval=options.keepalive_interval,
            keepalive_count_max=options.keepalive_count_max,
            connect_timeout=options.connect_timeout,
            command_timeout=options.command_timeout,
            worker_runtime=options.worker_runtime,
            worker_wheelhouse=options.worker_wheelhouse,
        )
        self.other_collections = set(other_collections or ()) - {collection.name}
        self.rented: dict[str, Rented] = {}
        self.creating: set[str] = set()
        self.bad = BadHosts()
        self.unaccounted: dict[
            int, str
        ] = {}  # instance id -> label: ours by prefix, of no collection we know
        self.to_destroy: set[int] = set()  # destroys that failed: retried every listing
        # what vast.ai bills us for: every instance rented or found, until its destroy is confirmed
        # (a lost or released instance keeps billing until then, so the budget counts it)
        self.billed: dict[int, tuple[str, float]] = {}  # instance id -> (name, $/h)
        self.driver_url = ""
        self.list_calls = 0
        self.cheapest_seen: float | None = None
        self._rent_lock = asyncio.Lock()
        self._listing_lock = asyncio.Lock()
        self._listing: tuple[float, list[dict[str, Any]]] | None = None
        self._bundle: WorkerBundle | None = None
        self._bundle_lock = asyncio.Lock()
        self._background: set[asyncio.Task[None]] = set()
        self._destroying: set[int] = set()

    # ------------------------------------------------------------ labels

    @property
    def label_head(self) -> str:
        return f"{self.options.label_prefix}:{self.collection}:"

    def _parse_label(self, label: str | None) -> tuple[str, str] | None:
        """(collection, name) of a label of ours, else None."""
        head = f"{self.options.label_prefix}:"
        if not label or not label.startswith(head):
            return None
        rest = label[len(head) :]
        collection, _, name = rest.partition(":")
        return (collection, name) if name else None

    # ------------------------------------------------------------ InstanceProvider

    def shapes(self) -> list[MachineShape]:
        s = self.config.shape
        if s is None:
            return []
        from corral.driver.collections import collection_shape

        shape = collection_shape(self.config)
        return [shape] if shape else []

    async def start(self, driver_url: str) -> None:
        self.driver_url = driver_url
        key = Path(self.options.ssh_key).expanduser()
        pub = key.with_name(key.name + ".pub")
        try:
            public = pub.read_text().strip()
        except OSError as exc:
            raise CorralError(
                f"vastai {self.collection}: ssh_key {key}: cannot read {pub}: {exc.strerror}"
            ) from None
        await self.client.add_ssh_key(public)

    async def stop(self) -> None:
        for r in self.rented.values():
            await self._close(r)
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.client.close()

    def committed_per_hour(self) -> float:
        """$/h of every instance not yet confirmed destroyed (lost and released ones included)."""
        return sum(price for _, price in self.billed.values())

    def capacity(self, shape: MachineShape) -> int:
        """More instances the budget allows (the autoscaler asks no more; creates check it again)."""
        if self.options.max_total_per_hour is None:
            return 1 << 30
        committed = sum(price for name, price in self.billed.values() if name not in self.creating)
        left = self.options.max_total_per_hour - committed
        cheapest = self.cheapest_seen or self.options.max_price_per_hour or 0.0
        if cheapest <= 0:
            return 1 if left > 0 else 0
        return max(0, int(left // cheapest + 1e-9))

    async def create_instance(self, request: InstanceRequest) -> dict[str, object]:
        self.creating.add(request.name)
        phases: dict[str, float] = {}
        failures: list[str] = []
        tried: set[int] = set()
        extra: dict[str, Any] = {}
        try:
            for _ in range(self.options.max_offer_attempts):
                try:
                    r = await self._rent(request, phases, tried)
                except NoOfferFits as exc:
                    if not failures:
                        raise
                    failures.append(str(exc))
                    break
                try:
                    return await self._bring_up(r, request, phases)
                except asyncio.CancelledError:
                    await asyncio.shield(self._destroy(r, "its creation was cancelled"))
                    raise
                except Exception as exc:
                    reason = str(exc) or type(exc).__name__
                    failures.append(f"machine {r.machine_id}: {reason}")
                    self.bad.add(r.machine_id, reason, time.time(), self.options.bad_host_seconds)
                    log.warning(
                        "vastai %s: instance %s (machine %s) failed: %s; destroying it, machine "
                        "bad-listed for %.0fs",
                        self.collection,
                        r.vast_id,
                        r.machine_id,
                        reason,
                        self.options.bad_host_seconds,
                    )
                    await self._destroy(r, reason)
                    found = getattr(exc, "metadata", None)
                    if isinstance(found, dict):
                        extra.update(found)
            raise BringUpFailed(
                f"{len(failures)} attempts failed: " + "; ".join(failures), {**extra, "failures": failures}
            )
        finally:
            self.creating.discard(request.name)

    async def delete_instance(self, name: str, metadata: dict[str, object]) -> None:
        r = self.rented.get(name)
        if r is not None:
            await self._destroy(r, "released")
            return
        vast_id = metadata.get("vast_id")
        if isinstance(vast_id, int):
            await self._destroy_id(vast_id)
            return
        for info in await self._list(max_age=0):  # created before we learned its id: find it by label
            if info.get("label") == f"{self.label_head}{name}":
                await self._destroy_id(int(info["id"]))

    async def list_instances(self) -> list[ProviderInstance]:
        self.list_calls += 1
        listing = await self._list(max_age=0)
        by_id = {int(i["id"]): i for i in listing}
        out: list[ProviderInstance] = []
        for r in list(self.rented.values()):
            if r.name in self.creating:
                out.append(ProviderInstance(r.name, "pending", None, {"vast_id": r.vast_id}))
                continue
            info = by_id.get(r.vast_id)
            if r.status == "gone" and not r.reason_from_listing and info is not None:
                # the host's symptoms (no GPUs, SSH lost) were seen first; vast.ai's cause outranks them
                listed = listing_reason(r, info)
                if listed is not None:
                    log.info(
                        "vastai %s: instance %s: %s (seen first as: %s)",
                        self.collection,
                        r.name,
                        listed,
                        r.reason,
                    )
                    r.reason, r.reason_from_listing = listed, True
            if r.status != "gone":
                reason = gone_reason(r, info)
                if reason is not None:
                    r.status, r.reason = "gone", reason
                    r.reason_from_listing = listing_reason(r, info) is not None
                    if r.vast_id in by_id:  # it failed us (offline, outbid, unreachable): not again soon
                        self.bad.add(r.machine_id, reason, time.time(), self.options.bad_host_seconds)
                    log.warning(
                        "vastai %s: instance %s (%s) is gone: %s", self.collection, r.name, r.vast_id, reason
                    )
            out.append(
                ProviderInstance(r.name, r.status, r.reason, {"health": r.health[-1]} if r.health else {})
            )
        self._sweep(listing)
        return out

    # ------------------------------------------------------------ restart

    async def adopt(self, known: dict[str, dict[str, Any]]) -> None:
        """After a restart: reconnect to every instance of ours the store knows, destroy the others."""
        await adopt(self, known)

    def _sweep(self, listing: list[dict[str, Any]]) -> None:
        sweep(self, listing)

    # ------------------------------------------------------------ renting

    async def _rent(self, request: InstanceRequest, phases: dict[str, float], tried: set[int]) -> Rented:
        """One instance rented from the best offer, under the lock (one create at a time)."""
        o = self.options
        async with self._rent_lock:
            committed = self.committed_per_hour()
            budget_left = None if o.max_total_per_hour is None else o.max_total_per_hour - committed
            started = time.monotonic()
            offers = await self.client.search_offers(search_query(o, request.shape))
            phases["search"] = phases.get("search", 0.0) + time.monotonic() - started
            if offers:
                self.cheapest_seen = min(offer_price(x, o) for x in offers)
            per_machine = Counter(r.machine_id for r in self.rented.values() if r.status != "gone")
            ranked = rank_offers(
                offers,
                o,
                bad=self.bad,
                now=time.time(),
                ours_per_machine=per_machine,
                budget_left=budget_left,
                skip=tried,
            )
            if not ranked:
                raise NoOfferFits(
                    f"vastai {self.collection}: no usable offer ({len(offers)} found, "
                    f"{len(self.bad.active(time.time()))} machines bad-listed"
                    + (f", ${budget_left:.3f}/h of the budget left" if budget_left is not None else "")
                    + ")"
                )
            label = f"{self.label_head}{request.name}"
            started = time.monotonic()
            for offer in ranked:
                ask, machine = int(offer["id"]), int(offer["machine_id"])
                tried.add(ask)
                price = offer_price(offer, o)
                body: dict[str, Any] = {
                    "client_id": "me",
                    "image": o.image,
                    "disk": o.disk_gb,
                    "label": label,
                    "env": {"-p 22:22": "1"},
                    "runtype": "ssh_direc ssh_proxy",
                    "cancel_unavail": True,
                }
                if o.onstart:
                    body["onstart"] = o.onstart
                if o.interruptible:
                    body["price"] = price
                try:
                    vast_id = await self.client.rent(ask, body, timeout=o.rent_timeout)
                except OfferGone as exc:
                    log.info("vastai %s: %s; trying the next offer", self.collection, exc)
                    continue
                except RentRejected as exc:
                    if exc.new_contract is not None:  # e.g. a bid below min_bid: it exists, stopped
                        self.billed[exc.new_contract] = (request.name, price)
                        log.warning(
                            "vastai %s: rent of %s refused (%s) but instance %s exists: destroying it",
                            self.collection,
                            ask,
                            exc,
                            exc.new_contract,
                        )
                        await self._destroy_id(exc.new_contract)
                    self.bad.add(machine, f"rent refused: {exc}", time.time(), min(300.0, o.bad_host_seconds))
                    continue
                except RentTimedOut as exc:
                    log.warning("vastai %s: %s; looking for it by label %s", self.collection, exc, label)
                    found = await self._find_by_label(label)
                    if found is None:
                        continue
                    vast_id = found
                phases["create"] = phases.get("create", 0.0) + time.monotonic() - started
                r = Rented(request.name, vast_id, machine, dict(offer), price, o.interruptible, label)
                self.rented[request.name] = r
                self.billed[vast_id] = (request.name, price)
                self._listing = None
                log.info(
                    "vastai %s: rented %s on machine %s (%s x%s, $%.3f/h) as instance %s",
                    self.collection,
                    ask,
                    machine,
                    offer.get("gpu_name"),
                    offer.get("num_gpus"),
                    price,
                    vast_id,
                )
                return r
            raise NoOfferFits(f"vastai {self.collection}: every usable offer was gone or refused")

    async def _find_by_label(self, label: str) -> int | None:
        """A create that timed out may have made the instance anyway: look for it a few times."""
        for _ in range(3):
            for info in await self._list(max_age=0):
                if info.get("label") == label:
                    return int(info["id"])
            await asyncio.sleep(self.options.poll_seconds)
        return None

    # ------------------------------------------------------------ bringing up

    def _ssh_host(self, name: str, address: tuple[str, int]) -> SshHost:
        shape = self.config.shape
        return SshHost(
            name=name,
            address=address[0],
            port=address[1],
            user=self.options.ssh_user,
            key=self.options.ssh_key,
            check_host_key=self.options.check_host_key,
            cores=shape.cores if shape else 1,
            memory=shape.memory if shape else "1Gi",
            gpus=shape.gpus if shape else 0,
            python=self.options.python,
            work_dir=self.options.work_dir,
        )

    async def _bring_up(
        self, r: Rented, request: InstanceRequest, phases: dict[str, float]
    ) -> dict[str, object]:
        o = self.options
        started = time.monotonic()
        deadline = started + o.running_deadline
        while True:
            info = next(
                (i for i in await self._list(max_age=o.poll_seconds) if int(i["id"]) == r.vast_id), None
            )
            status = info.get("actual_status") if info else None
            message = str(info.get("status_msg") or "") if info else ""
            if info is not None and OCI_FAILURE in message:
                raise remote.BringUpError(f"the container did not start: {message[:300]}")
            if info is not None and status in FAILED_STATES:
                raise remote.BringUpError(f"status {status} while starting: {message[:300]}")
            address = remote.ssh_address(info, o.ssh_via) if info and status == "running" else None
            if address is not None:
                break
            if time.monotonic() >= deadline:
                raise remote.BringUpError(
                    f"not running after {o.running_deadline:.0f}s "
                    f"(status {status or 'none'}: {message[:200]})"
                )
            await asyncio.sleep(min(o.poll_seconds, max(0.05, deadline - time.monotonic())))
        phases["running"] = time.monotonic() - started
        started = time.monotonic()
        session = await remote.connect(
            self._ssh_host(r.name, address),
            self.ssh_options,
            request.driver_url,
            deadline=started + o.ssh_deadline,
        )
        r.session = session
        phases["ssh"] = time.monotonic() - started
        shape = request.shape
        gpus = int(r.offer.get("num_gpus") or 0)
        names = await remote.check_gpus(
            session, gpus, str(r.offer.get("gpu_name") or "") or None, o.connect_timeout
        )
        started = time.monotonic()
        assert session.conn is not None
        prepared = await prepare_or_raise(
            session.conn, self.prepare, work_dir=session.work_dir, host=f"{r.name} (vast {r.vast_id})"
        )
        phases["prepare"] = time.monotonic() - started
        started = time.monotonic()
        python = await session.ensure_venv(await self._worker_bundle())
        pid = await remote.start_worker(
            session,
            python,
            name=r.name,
            token=request.worker_token,
            cores=shape.cores,
            memory_bytes=shape.memory_bytes,
            gpus=gpus,
            runtime=o.worker_runtime,
            worker_env=self.worker_env,
        )
        phases["worker"] = time.monotonic() - started
        r.status = "running"
        r.metadata = {
            "vast_id": r.vast_id,
            "machine_id": r.machine_id,
            "ask_id": int(r.offer["id"]),
            "price_per_hour": r.price,
            "interruptible": r.is_bid,
            "gpus": names,
            "label": r.label,
            "ssh": f"{address[0]}:{address[1]}",
            "tunnel_port": session.tunnel_port,
            "worker_pid": pid,
            "cost_per_core_hour": r.price / shape.cores if shape.cores else 0.0,
            "offer": {
                k: r.offer.get(k)
                for k in (
                    "id",
                    "machine_id",
                    "gpu_name",
                    "num_gpus",
                    "dph_total",
                    "dlperf",
                    "geolocation",
                    "reliability2",
                )
            },
            "phases": {k: round(v, 3) for k, v in phases.items()},
            **prepared,
        }
        self._start_sampler(r)
        return dict(r.metadata)

    async def _worker_bundle(self) -> WorkerBundle:
        async with self._bundle_lock:
            if self._bundle is None:
                self._bundle = await worker_bundle(self.options.worker_wheelhouse)
            return self._bundle

    # ------------------------------------------------------------ watching

    async def _sample(self, r: Rented) -> None:
        assert r.session is not None
        reason = await watch_health(
            r.session,
            self.thresholds,
            r.health,
            interval=self.options.health_interval,
            expected_gpus=int(r.offer.get("num_gpus") or 0),
        )
        if r.status == "running":
            r.status, r.reason = "gone", reason
            self.bad.add(r.machine_id, reason, time.time(), self.options.bad_host_seconds)
            log.warning("vastai %s: instance %s is gone: %s", self.collection, r.name, reason)

    def _start_sampler(self, r: Rented) -> None:
        if self.options.health_interval > 0 and r.sampler is None:
            r.sampler = asyncio.create_task(self._sample(r), name=f"health-{r.name}")

    # ------------------------------------------------------------ listing and destroying

    async def _list(self, *, max_age: float) -> list[dict[str, Any]]:
        """The account's instances, sharing one call among concurrent callers within `max_age`."""
        async with self._listing_lock:
            now = time.monotonic()
            if self._listing is not None and max_age > 0 and now - self._listing[0] < max_age:
                return self._listing[1]
            listing = await self.client.list_instances()
            self._listing = (time.monotonic(), listing)
            return listing

    async def _close(self, r: Rented) -> None:
        if r.sampler is not None:
            r.sampler.cancel()
        if r.session is not None:
            await r.session.close()

    async def _destroy(self, r: Rented, why: str) -> None:
        self.rented.pop(r.name, None)
        r.status = "gone"
        await self._close(r)
        await self._destroy_id(r.vast_id)
        log.info("vastai %s: destroyed instance %s (%s): %s", self.collection, r.name, r.vast_id, why)

    async def _destroy_id(self, vast_id: int) -> None:
        """Destroy until vast.ai says done or gone; a failure is retried from the next listing."""
        if vast_id in self._destroying:
            return
        self.to_destroy.add(vast_id)
        self._destroying.add(vast_id)
        try:
            await self._destroy_attempts(vast_id)
        finally:
            self._destroying.discard(vast_id)

    async def _destroy_attempts(self, vast_id: int) -> None:
        for attempt in range(3):
            try:
                await self.client.destroy(vast_id)
                self.to_destroy.discard(vast_id)
                self.billed.pop(vast_id, None)
                self._listing = None
                return
            except VastApiError as exc:
                log.warning(
                    "vastai %s: destroying %s failed (%s)%s",
                    self.collection,
                    vast_id,
                    exc,
                    ", will retry" if attempt < 2 else ", retried from the next listing",
                )
                await asyncio.sleep(self.options.retry_base_seconds * 2**attempt)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)


def create_provider(collection: InstanceCollectionConfig, settings: Settings) -> VastProvider:
    logging.getLogger("asyncssh").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # its INFO logs every request
    options = parse_options(collection.provider_options, collection=collection.name)
    return VastProvider(
        collection,
        options,
        options.api_key(collection.name),
        other_collections={c.name for c in settings.instance_collections},
        worker_env=worker_environment(settings),
    )
