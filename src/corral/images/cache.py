"""A shared, size-bounded cache of unpacked images: one pull per image however many jobs want it.

Layout under the cache dir: entries/<key>/{rootfs, image.json, ready, use.lock}, locks/<key>.lock.
Jobs hold a shared flock on use.lock while their container runs; eviction (least recently used first,
when the cache is over its size) takes it exclusively without waiting, so an image in use stays.
Pulls are single-flight within a worker (one task per image) and across workers (an exclusive flock).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import hashlib
import logging
import os
import shutil
import time
import uuid
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from corral.images.config import ImagesConfig
from corral.images.pull import ImageInfo, copy_to_layout, unpack
from corral.images.reference import ImageReference, parse_reference, rewrite

log = logging.getLogger(__name__)


@dataclass
class ImageLease:
    """An unpacked image a container may use until `release`."""

    ref: ImageReference
    rootfs: Path
    info: ImageInfo
    _fd: int = field(repr=False)

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # drops the shared lock
            self._fd = -1


def _lock(path: Path, mode: int) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, mode)
    except BaseException:
        os.close(fd)
        raise
    return fd


class ImageCache:
    def __init__(self, config: ImagesConfig, directory: Path) -> None:
        self.config = config
        self.dir = directory
        self.pulls = 0  # pulls done by this process (the rest came from the cache)
        self._inflight: dict[str, asyncio.Task[None]] = {}

    def prepare(self) -> None:
        for sub in ("entries", "locks", "tmp"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        for leftover in (self.dir / "tmp").iterdir():
            self._remove_if_abandoned(leftover)

    def _remove_if_abandoned(self, leftover: Path) -> None:
        """Half-done pulls of a crashed worker; not those another worker of the machine is doing now."""
        key = leftover.name.split("-", 1)[0]
        try:
            fd = _lock(self.dir / "locks" / f"{key}.lock", fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # its pull is in progress
        try:
            shutil.rmtree(leftover, ignore_errors=True)
        finally:
            os.close(fd)

    def resolve(self, image: str) -> ImageReference:
        return rewrite(parse_reference(image), self.config.rewrite)

    def entry(self, ref: ImageReference) -> Path:
        return self.dir / "entries" / hashlib.sha256(str(ref).encode()).hexdigest()[:32]

    async def acquire(self, image: str) -> ImageLease:
        """The unpacked image, pulled first if needed; raises ImageError with the user's message."""
        ref = self.resolve(image)
        entry = self.entry(ref)
        while True:
            if not (entry / "ready").exists():
                key = entry.name
                task = self._inflight.get(key)
                if task is None:
                    task = asyncio.create_task(self._pull(ref, entry), name=f"pull {ref}")
                    self._inflight[key] = task
                    task.add_done_callback(partial(self._forget, key))
                await asyncio.shield(task)
            fd = await asyncio.to_thread(_lock, entry / "use.lock", fcntl.LOCK_SH)
            if (entry / "ready").exists():  # not evicted between the check and the lock
                break
            os.close(fd)
        with contextlib.suppress(OSError):
            os.utime(entry / "ready")  # recency for LRU eviction
        info = ImageInfo.from_json((entry / "image.json").read_text())
        return ImageLease(ref, entry / "rootfs", info, fd)

    def _forget(self, key: str, _task: object) -> None:
        self._inflight.pop(key, None)

    async def _pull(self, ref: ImageReference, entry: Path) -> None:
        lock = await asyncio.to_thread(_lock, self.dir / "locks" / f"{entry.name}.lock", fcntl.LOCK_EX)
        try:
            if (entry / "ready").exists():
                return  # another worker pulled it while we waited
            tmp = self.dir / "tmp" / f"{entry.name}-{uuid.uuid4().hex[:8]}"
            tmp.mkdir(parents=True)
            try:
                started = time.monotonic()
                digest = await copy_to_layout(ref, tmp / "layout", self.config)
                info = await unpack(tmp / "layout", tmp / "bundle", digest)
                shutil.rmtree(entry, ignore_errors=True)
                entry.mkdir(parents=True)
                (tmp / "bundle" / "rootfs").rename(entry / "rootfs")
                (entry / "image.json").write_text(info.to_json())
                (entry / "ready").write_text(str(ref))
                self.pulls += 1
                log.info("pulled image %s (%s, %d bytes) in %.2fs", ref, digest, info.size_bytes,
                         time.monotonic() - started)
            finally:
                await asyncio.to_thread(shutil.rmtree, tmp, True)
        finally:
            os.close(lock)
        await asyncio.to_thread(self.evict, keep=entry)

    def evict(self, keep: Path | None = None) -> list[Path]:
        """Remove least recently used images not in use until the cache fits its size bound."""
        entries: list[tuple[float, int, Path]] = []
        for entry in (self.dir / "entries").iterdir():
            try:
                info = ImageInfo.from_json((entry / "image.json").read_text())
                entries.append(((entry / "ready").stat().st_mtime, info.size_bytes, entry))
            except (OSError, ValueError, TypeError):
                continue
        total = sum(size for _, size, _ in entries)
        removed = []
        for _, size, entry in sorted(entries):
            if total <= self.config.cache_max_bytes:
                break
            if entry == keep:
                continue
            try:
                fd = _lock(entry / "use.lock", fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # a job is using it
            try:
                (entry / "ready").unlink(missing_ok=True)
                trash = self.dir / "tmp" / f"{entry.name}-evicted-{uuid.uuid4().hex[:8]}"
                entry.rename(trash)
            finally:
                os.close(fd)
            shutil.rmtree(trash, ignore_errors=True)
            total -= size
            removed.append(entry)
            log.info("evicted image cache entry %s (%d bytes)", entry.name, size)
        return removed
