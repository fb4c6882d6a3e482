"""The ssh provider: workers on hosts of an inventory, reached with asyncssh (optionally through a jump host).

A host holds as many instances as its cores, memory and GPUs allow. Creating an instance connects to the
host (one connection per host, shared by its instances, with keepalives), installs the worker bundle in a
venv unless this version is there, opens a reverse tunnel to the driver and starts the worker. The listing
needs no remote command: a worker is gone when its channel closed, a host when its connection broke.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from corral.domain.placement import gpus_fit
from corral.domain.resources import parse_bytes
from corral.errors import CorralError
from corral.providers.base import (
    InstanceRequest,
    InstanceStatus,
    MachineShape,
    ProviderInstance,
    worker_environment,
)
from corral.providers.config import InstanceCollectionConfig
from corral.providers.health import HealthThresholds, watch_health
from corral.providers.prepare import PreparationFailed, PrepareConfig, prepare_or_raise
from corral.providers.ssh.bundle import WorkerBundle, worker_bundle
from corral.providers.ssh.options import (
    SshHost,
    SshOptions,
    check_key_files,
    parse_options,
    read_inventory,
)
from corral.providers.ssh.session import HostSession, HostUnreachable

if TYPE_CHECKING:
    from corral.config import Settings

log = logging.getLogger("corral.providers.ssh")


class NoHostFits(CorralError):
    status_code = 409


@dataclass
class _Placed:
    name: str
    host: str
    shape: MachineShape
    gpu_ids: list[str]
    status: InstanceStatus = "pending"
    reason: str | None = None
    metadata: dict[str, object] = field(default_factory=dict)


class SshProvider:
    name = "ssh"

    def __init__(
        self, collection: str, options: SshOptions, *, prepare: PrepareConfig | None = None,
        worker_env: Mapping[str, str] | None = None,
    ) -> None:
        self.collection = collection
        self.worker_env = dict(worker_env or {})  # from the server's settings (base.worker_environment)
        self.options = options
        self.prepare = prepare
        self.hosts: dict[str, SshHost] = {h.name: h for h in options.hosts}
        self.placed: dict[str, _Placed] = {}
        self.sessions: dict[str, HostSession] = {}
        self.driver_url = ""
        self._bundle: WorkerBundle | None = None
        self._bundle_lock = asyncio.Lock()
        self._connect_locks: dict[str, asyncio.Lock] = {}
        self._host_failed: dict[str, float] = {}
        self.thresholds = HealthThresholds.model_validate(options.health)
        self.health: dict[str, list[dict[str, Any]]] = {}  # host -> recent samples
        self._unhealthy: dict[str, str] = {}  # host -> why
        self._samplers: dict[str, asyncio.Task[None]] = {}
        self.list_calls = 0
        self._read_inventory()
        check_key_files(list(self.hosts.values()), collection=collection)

    # ------------------------------------------------------------ inventory

    def _read_inventory(self) -> None:
        """Inline hosts plus the inventory file; a broken file keeps the last good list."""
        hosts = {h.name: h for h in self.options.hosts}
        listed: list[SshHost] = []
        if self.options.inventory:
            try:
                listed = read_inventory(self.options.inventory, collection=self.collection)
            except (OSError, ValueError, CorralError) as exc:
                log.error("inventory of %s unreadable, keeping its %d hosts: %s",
                          self.collection, len(self.hosts), exc)
                return
        hosts.update({h.name: h for h in listed})
        self.hosts = hosts

    # ------------------------------------------------------------ InstanceProvider

    async def start(self, driver_url: str) -> None:
        self.driver_url = driver_url

    async def stop(self) -> None:
        for task in self._samplers.values():
            task.cancel()
        for session in list(self.sessions.values()):
            for name in list(session.workers):
                await session.stop_worker(name)
            await session.close()
        self.sessions.clear()

    async def create_instance(self, request: InstanceRequest) -> dict[str, object]:
        host, gpu_ids = self._choose_host(request.shape)
        placed = _Placed(request.name, host.name, request.shape, gpu_ids)
        self.placed[request.name] = placed  # holds the host's capacity from now on
        try:
            bundle = await self._worker_bundle()
            session = await self._session(host)
            assert session.conn is not None
            prepared = await prepare_or_raise(session.conn, self.prepare, work_dir=session.work_dir,
                                              host=f"{host.name} ({request.name})")
            python = await session.ensure_venv(bundle)
            remote = await session.start_worker(
                python, name=request.name, token=request.worker_token, cores=request.shape.cores,
                memory_bytes=request.shape.memory_bytes, gpu_ids=gpu_ids, runtime=self.options.worker_runtime,
                worker_env=self.worker_env,
            )
        except (HostUnreachable, PreparationFailed):
            self._host_failed[host.name] = time.monotonic()
            self.placed.pop(request.name, None)
            raise
        except BaseException:
            self.placed.pop(request.name, None)
            raise
        if placed.status == "pending":
            placed.status = "running"
        placed.metadata = {"host": host.name, "address": host.address, "pid": remote.pid, "gpu_ids": gpu_ids,
                           "tunnel_port": session.tunnel_port, **prepared}
        return dict(placed.metadata)

    async def delete_instance(self, name: str, metadata: dict[str, object]) -> None:
        placed = self.placed.pop(name, None)
        host = placed.host if placed else str(metadata.get("host", ""))
        session = self.sessions.get(host)
        if session is not None:
            await session.stop_worker(name)

    async def list_instances(self) -> list[ProviderInstance]:
        """One sweep, no remote command: channel and connection states are kept by asyncssh."""
        self.list_calls += 1
        self._read_inventory()
        listing: list[ProviderInstance] = []
        for placed in self.placed.values():
            session = self.sessions.get(placed.host)
            if placed.status == "running":
                placed.reason = self._gone_reason(placed, session)
                if placed.reason is not None:
                    placed.status = "gone"
            samples = self.health.get(placed.host)
            health = {"health": samples[-1]} if samples else {}
            listing.append(ProviderInstance(placed.name, placed.status, placed.reason,
                                            {**placed.metadata, **health}))
        if any(p.status == "gone" for p in self.placed.values()):
            self.placed = {n: p for n, p in self.placed.items() if p.status != "gone"}
        return listing

    # ------------------------------------------------------------ internals

    def capacity(self, shape: MachineShape) -> int:
        """How many more instances of `shape` fit on the hosts now (the autoscaler asks no more of us)."""
        count = 0
        for host in self.hosts.values():
            cores, memory, gpu_ids = self._free(host)
            while (
                shape.cores <= cores + 1e-9 and shape.memory_bytes <= memory
                and gpus_fit(shape.gpus, shape.gpu_type, len(gpu_ids), host.gpu_type)
                and all(host.labels.get(k) == v for k, v in shape.labels.items())
            ):
                count += 1
                cores, memory = cores - shape.cores, memory - shape.memory_bytes
                gpu_ids = gpu_ids[shape.gpus:]
                if shape.cores <= 0:
                    break
        return count

    def _gone_reason(self, placed: _Placed, session: HostSession | None) -> str | None:
        if placed.host in self._unhealthy:
            return self._unhealthy[placed.host]
        if placed.host not in self.hosts:
            return f"host {placed.host} was removed from the inventory"
        if session is None or not session.alive:
            return session.lost if session is not None and session.lost else f"host {placed.host} unreachable"
        code = session.worker_exited(placed.name)
        return None if code is None else f"worker exited with status {code}"

    def _choose_host(self, shape: MachineShape) -> tuple[SshHost, list[str]]:
        """The first host with room for the shape, hosts that failed lately last."""
        now = time.monotonic()
        hosts = sorted(
            self.hosts.values(),
            key=lambda h: now - self._host_failed.get(h.name, -1e9) < self.options.host_retry_seconds,
        )
        for host in hosts:
            cores, memory, gpu_ids = self._free(host)
            if (
                shape.cores <= cores + 1e-9 and shape.memory_bytes <= memory
                and gpus_fit(shape.gpus, shape.gpu_type, len(gpu_ids), host.gpu_type)
                and all(host.labels.get(k) == v for k, v in shape.labels.items())
            ):
                return host, gpu_ids[: shape.gpus]
        raise NoHostFits(
            f"no host of {self.collection} has room for {shape.cores:g} cores, {shape.memory_bytes} bytes, "
            f"{shape.gpus} GPUs ({len(self.hosts)} hosts in the inventory)"
        )

    def _free(self, host: SshHost) -> tuple[float, int, list[str]]:
        mine = [p for p in self.placed.values() if p.host == host.name and p.status != "gone"]
        cores = host.cores - sum(p.shape.cores for p in mine)
        memory = _host_shape(host).memory_bytes - sum(p.shape.memory_bytes for p in mine)
        used = {g for p in mine for g in p.gpu_ids}
        return cores, memory, [str(i) for i in range(host.gpus) if str(i) not in used]

    async def _worker_bundle(self) -> WorkerBundle:
        async with self._bundle_lock:
            if self._bundle is None:
                self._bundle = await worker_bundle(self.options.worker_wheelhouse)
            return self._bundle

    async def _session(self, host: SshHost) -> HostSession:
        lock = self._connect_locks.setdefault(host.name, asyncio.Lock())
        async with lock:
            session = self.sessions.get(host.name)
            if session is not None and session.alive and session.host == host:
                return session
            if session is not None:
                await session.close()
            session = HostSession(host, self.options)
            await session.connect(self.driver_url)
            self.sessions[host.name] = session
            self._unhealthy.pop(host.name, None)
            if self.options.health_interval > 0:
                old = self._samplers.pop(host.name, None)
                if old is not None:
                    old.cancel()
                self._samplers[host.name] = asyncio.create_task(self._watch_health(host, session))
            return session

    async def _watch_health(self, host: SshHost, session: HostSession) -> None:
        """Sample the host; an unhealthy one loses its instances (their jobs run elsewhere) until it is
        connected again."""
        history = self.health.setdefault(host.name, [])
        while session.alive:
            reason = await watch_health(session, self.thresholds, history, expected_gpus=host.gpus,
                                        interval=self.options.health_interval)
            if not session.alive:
                return
            log.warning("host %s of %s: %s", host.name, self.collection, reason)
            self._unhealthy[host.name] = f"host {host.name} {reason}"
            self._host_failed[host.name] = time.monotonic()
            await asyncio.sleep(max(self.options.host_retry_seconds, self.options.health_interval))
            self._unhealthy.pop(host.name, None)  # sampled again: usable once healthy


def _host_shape(host: SshHost) -> MachineShape:
    return MachineShape(
        name=host.name, cores=host.cores,
        memory_bytes=parse_bytes(host.memory, field=f"hosts.{host.name}.memory"),
        gpus=host.gpus, gpu_type=host.gpu_type, labels=dict(host.labels),
    )


def create_provider(collection: InstanceCollectionConfig, settings: Settings) -> SshProvider:
    logging.getLogger("asyncssh").setLevel(logging.WARNING)  # its INFO logs every channel and command
    options = parse_options(collection.provider_options, collection=collection.name)
    return SshProvider(
        collection.name, options, prepare=collection.prepare, worker_env=worker_environment(settings)
    )
