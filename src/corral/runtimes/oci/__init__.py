"""The oci runtime: each job with an image runs in an OCI container (crun or runc, no Docker engine).

The container has its own user namespace: the image's user is the job's unprivileged uid on the host
(oci/userns.py). Its root is an overlay over an idmapped view of the unpacked image from the shared
cache, /io is bound from the host (the
input and output steps use the same directory; a volume of the job's storage size when it asks for
one), limits are on the job's cgroup (v1 or v2) with the container in a child cgroup of it, and the
network is none, private (NAT) or public. Jobs without an image run in the process sandbox.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
from dataclasses import replace
from pathlib import Path

from corral.config import Settings
from corral.images.cache import ImageCache, ImageLease
from corral.images.pull import ImageError
from corral.runtimes.base import MainRequest, MainResult, Runtime, RuntimeUnavailable, now
from corral.runtimes.cgroups import (
    ContainerCgroups,
    Limits,
    detect_container_cgroups,
    record_cgroups,
    safe_name,
)
from corral.runtimes.identity import JobUser, give_to
from corral.runtimes.network import NetworkError, PrivateNetwork, plumbing, resolv_conf
from corral.runtimes.oci.bundle import bind, container_config
from corral.runtimes.oci.container import ContainerRun, remove_job_cgroups
from corral.runtimes.oci.engine import Engine, choose_engine
from corral.runtimes.oci.mounts import mount_overlay, unmount
from corral.runtimes.oci.network import public_mounts
from corral.runtimes.oci.recovery import recover
from corral.runtimes.oci.userns import (
    UserNamespaces,
    id_mapping,
    instance_stage,
    mount_idmapped,
    probe_idmapped_mounts,
    stage_bind,
    stage_dir,
)
from corral.runtimes.process import DEFAULT_PIDS_LIMIT, ProcessRuntime
from corral.runtimes.registry import register

log = logging.getLogger(__name__)
NETWORKS = (None, "none", "private", "public")


@register
class OciRuntime(Runtime):
    name = "oci"
    pids_limit = DEFAULT_PIDS_LIMIT

    def __init__(self, *, instance_name: str, work_dir: Path, settings: Settings | None = None) -> None:
        super().__init__(instance_name=instance_name, work_dir=work_dir)
        self.settings = settings  # default: read at start, like the server (CORRAL_*, $CORRAL_CONFIG)
        self.sandbox = ProcessRuntime(instance_name=instance_name, work_dir=work_dir)
        self.sandbox_problem: str | None = None
        self.images: ImageCache | None = None
        self.engine: Engine | None = None
        self.cgroups: ContainerCgroups | None = None
        self.user_namespaces: UserNamespaces | None = None  # None: containers share the host's ids
        self._background: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        settings = self.settings or Settings()  # the worker reads [images] from the server's config file
        self.sandbox.settings = settings
        self.sandbox.jobs = settings.jobs  # networks: the same rules for containers and the sandbox
        config = settings.images
        self.images = ImageCache(config, config.cache_dir or settings.home / "images")
        await asyncio.to_thread(self.images.prepare)
        if config.user_namespace and os.geteuid() == 0:
            problem = await probe_idmapped_mounts(self.images.dir)
            if problem is not None:
                raise RuntimeUnavailable(
                    "the oci runtime runs containers in a user namespace over an idmapped mount of the "
                    f"image cache ({self.images.dir}), which this kernel or file system refuses: {problem}. "
                    "Needs Linux >= 5.19 and ext4/xfs/btrfs (tmpfs >= 6.3) for the cache, or [images] "
                    "user_namespace = false (then a container's root is the host's root)"
                )
            self.user_namespaces = UserNamespaces()
        self.engine = await choose_engine(config.oci_runtime, self.work_dir)
        self.cgroups = await asyncio.to_thread(detect_container_cgroups, self.instance_name)
        if self.cgroups is None:
            raise RuntimeUnavailable("the oci runtime needs a cgroup memory controller (v1 or v2)")
        made = self.cgroups.cgroups.paths()
        made += [h / self.cgroups.relative.lstrip("/") for h in self.cgroups.hierarchies]
        await asyncio.to_thread(record_cgroups, self.work_dir, made)
        await recover(self.engine, self.cgroups, self.work_dir, instance_stage(self.instance_name))
        try:
            await self.sandbox.start()
        except RuntimeUnavailable as exc:  # image jobs still work; jobs without one say why they cannot
            self.sandbox_problem = exc.message
        log.info("oci runtime: %s, %s, image cache %s", self.engine.name, self.cgroups.cgroups.describe(),
                 self.images.dir)

    async def close(self) -> None:
        if self.images is not None:
            await self.images.close()
        if self.user_namespaces is not None:
            self.user_namespaces.close()
            with contextlib.suppress(OSError):  # empty once every job's stage is gone
                instance_stage(self.instance_name).rmdir()
        if self._background:
            await asyncio.gather(*self._background, return_exceptions=True)
        if self.sandbox_problem is None:
            await self.sandbox.close()
        if self.cgroups is not None:
            self.cgroups.cgroups.remove_base()
            for hierarchy in self.cgroups.hierarchies:  # where the OCI runtime created the path too
                with contextlib.suppress(OSError):
                    (hierarchy / self.cgroups.relative.lstrip("/")).rmdir()

    def network_of(self, mode: str | None) -> str:
        return self.sandbox.network_of(mode)  # containers follow the sandbox's network rules

    def job_user(self, key: str) -> JobUser | None:
        return self.sandbox.job_user(key)

    def release_job_user(self, key: str) -> None:
        self.sandbox.release_job_user(key)

    async def prepare_io(self, volume: Path, storage_bytes: int) -> None:
        await self.sandbox.prepare_io(volume, storage_bytes)

    async def release_io(self, volume: Path) -> None:
        await self.sandbox.release_io(volume)

    async def run(self, request: MainRequest, cancel: asyncio.Event) -> MainResult:
        if not request.image:
            if self.sandbox_problem is not None:
                t = now()
                return MainResult("error", t, t, error=f"no image given and {self.sandbox_problem}")
            return await self.sandbox.run(request, cancel)
        start = now()
        if request.network not in NETWORKS:
            return MainResult("error", start, now(), error=f"unknown network mode {request.network!r}")
        assert self.images is not None, "OciRuntime.start() was not called"
        pull = asyncio.ensure_future(self.images.acquire(request.image))
        cancelled = asyncio.ensure_future(cancel.wait())
        try:
            await asyncio.wait({pull, cancelled}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cancelled.cancel()
        if not pull.done():
            pull.add_done_callback(_release_unused)  # the pull goes on for other jobs; this one stops
            return MainResult("cancelled", start, now())
        try:
            lease = pull.result()
        except ImageError as exc:
            return MainResult("error", start, now(), error=exc.message)
        except Exception as exc:  # e.g. an invalid reference that slipped past the API
            return MainResult("error", start, now(), error=f"image {request.image}: {exc}")
        user = self.job_user(request.key)  # the attempt's own uid (held with it; None: not root)
        try:
            return await self._run_container(request, lease, user, cancel, start)
        finally:
            self.release_job_user(request.key)
            lease.release()

    async def _run_container(
        self,
        request: MainRequest,
        lease: ImageLease,
        user: JobUser | None,
        cancel: asyncio.Event,
        start: float,
    ) -> MainResult:
        assert self.engine is not None and self.cgroups is not None
        bundle = request.scratch / "bundle"
        jobs = self.sandbox.jobs
        plumbing_ = plumbing(request.network, default=jobs.default_network, host_network=jobs.host_network)
        network: PrivateNetwork | None = None
        group = None
        mounts: list[Path] = []  # in mount order
        ids = None
        stage: Path | None = None
        spec_request = request  # the paths config.json names
        try:
            lower = lease.lower
            if self.user_namespaces is not None and user is not None:
                # /io and /tmp are the job uid's (the worker gave them): inside, they are the image user's.
                ids = id_mapping(user, lease.info.uid, lease.info.gid)
                give_to(user, request.io_dir, request.tmp_dir)
                image_view = bundle / "image"
                image_view.mkdir(parents=True, exist_ok=True)
                mount_idmapped(lower, image_view, await self.user_namespaces.fd(ids))
                mounts.append(image_view)
                lower = str(image_view)
                stage = stage_dir(self.instance_name, safe_name(request.key))
                rootfs = mount_overlay(lower, bundle, stage / "rootfs")
                mounts.append(rootfs)
                mounts.append(stage_bind(request.io_dir, stage, "io"))
                mounts.append(stage_bind(request.tmp_dir, stage, "tmp"))
                spec_request = replace(request, io_dir=stage / "io", tmp_dir=stage / "tmp", scratch=stage)
            else:
                if lease.info.uid != 0:  # the image's user must be able to write its /io and /tmp
                    for shared in (request.io_dir, request.tmp_dir):
                        os.chown(shared, lease.info.uid, lease.info.gid)
                rootfs = mount_overlay(lower, bundle)
                mounts.append(rootfs)
            limits = Limits(request.memory_bytes, request.cores_mcpu, self.pids_limit)
            group = self.cgroups.cgroups.create(request.key, limits)
            extra = []
            if plumbing_ == "nat":
                network = await self.sandbox.networks.take(request.published_ports)
                extra = [bind(resolv_conf(spec_request.scratch), "/etc/resolv.conf", readonly=True)]
            elif plumbing_ == "host":
                extra = public_mounts()
            cgroups_path = f"{self.cgroups.relative}/{safe_name(request.key)}/ctr"
            config = container_config(
                spec_request, lease.info, rootfs, cgroups_path=cgroups_path,
                netns_path=str(network.path) if network else None, extra_mounts=extra, network=plumbing_,
                ids=ids,
            )
            (bundle / "config.json").write_text(json.dumps(config))
        except (OSError, NetworkError) as exc:
            await self._cleanup(request.key, mounts, group, network, killed=False, stage=stage)
            return MainResult("error", start, now(), error=f"could not set up the container: {exc}")
        container = ContainerRun(
            self.engine, bundle, _container_id(request.key), group, self.cgroups, self.sandbox.default_storage
        )
        try:
            result = await container.run(request, cancel, start)
        finally:
            await self._cleanup(request.key, mounts, group, network, killed=container.killed, stage=stage)
        return result

    async def _cleanup(
        self,
        key: str,
        mounts: list[Path],
        group: object,
        network: PrivateNetwork | None,
        *,
        killed: bool,
        stage: Path | None = None,
    ) -> None:
        if network is not None:  # the container's processes are gone: the next job may use it
            self.sandbox.networks.give_back(network)
        for point in reversed(mounts):  # /io and /tmp's binds, the overlay, then the idmapped image under it
            with contextlib.suppress(OSError):
                unmount(point)
        if stage is not None:
            shutil.rmtree(stage, ignore_errors=True)  # mount points and resolv.conf only, all unmounted
        # Off the job's critical path: state of a killed container, emptied cgroups.
        task = asyncio.create_task(self._tidy(key, group, killed))
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _tidy(self, key: str, group: object, killed: bool) -> None:
        assert self.engine is not None and self.cgroups is not None
        if killed:
            proc = await asyncio.create_subprocess_exec(
                *self.engine.delete_argv(_container_id(key)), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            )
            await proc.wait()
        if group is not None:
            await remove_job_cgroups(self.cgroups, key)


def _container_id(key: str) -> str:
    return "corral-" + safe_name(key)


def _release_unused(task: asyncio.Future[ImageLease]) -> None:
    if not task.cancelled() and task.exception() is None:
        task.result().release()
