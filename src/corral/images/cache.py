"""A shared, size-bounded cache of unpacked images: one pull per image however many jobs want it.

Layout under the cache dir: entries/<key>/{rootfs, image.json, ready, checked, remote-digest, use.lock},
locks/<key>.lock. A tag is checked against the registry at most every `tag_check_interval` seconds and
pulled again when it moved (digests never move).
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
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

from corral.images.config import ImagesConfig
from corral.images.pull import ImageError, ImageInfo, copy_to_layout, remote_digest, unpack
from corral.images.reference import ImageReference, parse_reference, rewrite

log = logging.getLogger(__name__)


@dataclass
class ImageLease:
    """An unpacked image a container may use until `release`."""

    ref: ImageReference
    rootfs: Path
    info: ImageInfo
    _fd: int = field(repr=False)
    _root_fd: int = field(default=-1, repr=False)

    @property
    def lower(self) -> str:
        """The leased rootfs even if a moved tag renames its entry meanwhile (for overlay's lowerdir)."""
        return f"/proc/self/fd/{self._root_fd}" if self._root_fd >= 0 else str(self.rootfs)

    def release(self) -> None:
        if self._root_fd >= 0:
            os.close(self._root_fd)
            self._root_fd = -1
        if self._fd >= 0:
            os.close(self._fd)  # drops the shared lock
            self._fd = -1


def _read(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


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

    def sweep_retired(self) -> None:
        """Remove images replaced by a moved tag once no job runs on them."""
        for retired in (self.dir / "tmp").glob("*-retired-*"):
            self._remove_if_unused(retired)

    def _remove_if_unused(self, retired: Path) -> None:
        try:
            fd = _lock(retired / "use.lock", fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # a job still runs on it
        except FileNotFoundError:
            fd = -1
        try:
            shutil.rmtree(retired, ignore_errors=True)
        finally:
            if fd >= 0:
                os.close(fd)

    def _remove_if_abandoned(self, leftover: Path) -> None:
        """Half-done pulls of a crashed worker; not those another worker of the machine is doing now."""
        if "-retired-" in leftover.name:
            self._remove_if_unused(leftover)
            return
        key = leftover.name.split("-", 1)[0]
        try:
            fd = _lock(self.dir / "locks" / f"{key}.lock", fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return  # its pull is in progress
        try:
            shutil.rmtree(leftover, ignore_errors=True)
        finally:
            os.close(fd)

    async def close(self) -> None:
        """Stop pulls no job waits for any more (their skopeo processes are killed)."""
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def resolve(self, image: str) -> ImageReference:
        return rewrite(parse_reference(image), self.config.rewrite)

    def entry(self, ref: ImageReference) -> Path:
        return self.dir / "entries" / hashlib.sha256(str(ref).encode()).hexdigest()[:32]

    async def acquire(self, image: str) -> ImageLease:
        """The unpacked image, pulled first if needed; raises ImageError with the user's message."""
        ref = self.resolve(image)
        entry = self.entry(ref)
        if ref.digest is None and (entry / "ready").exists() and self._check_due(entry):
            await self._once(f"check {entry.name}", lambda: self._check_tag(ref, entry))
        while True:
            if not (entry / "ready").exists():
                await self._once(f"pull {entry.name}", lambda: self._pull(ref, entry))
            fd = await asyncio.to_thread(_lock, entry / "use.lock", fcntl.LOCK_SH)
            if (entry / "ready").exists():  # not evicted between the check and the lock
                break
            os.close(fd)
        with contextlib.suppress(OSError):
            os.utime(entry / "ready")  # recency for LRU eviction
        try:
            info = ImageInfo.from_json((entry / "image.json").read_text())
            root_fd = os.open(entry / "rootfs", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except BaseException:
            os.close(fd)
            raise
        return ImageLease(ref, entry / "rootfs", info, fd, root_fd)

    async def _once(self, key: str, work: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Single flight: concurrent callers with the same key share one run of `work`."""
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.create_task(work(), name=key)
            self._inflight[key] = task
            task.add_done_callback(partial(self._forget, key))
        await asyncio.shield(task)

    def _forget(self, key: str, _task: object) -> None:
        self._inflight.pop(key, None)

    def _check_due(self, entry: Path) -> bool:
        try:
            checked = (entry / "checked").stat().st_mtime
        except OSError:
            return True
        return time.time() - checked >= self.config.tag_check_interval

    async def _pull(self, ref: ImageReference, entry: Path) -> None:
        lock = await asyncio.to_thread(_lock, self.dir / "locks" / f"{entry.name}.lock", fcntl.LOCK_EX)
        try:
            if (entry / "ready").exists():
                return  # another worker pulled it while we waited
            staged = await self._fetch(ref, entry.name)
            try:
                shutil.rmtree(entry, ignore_errors=True)  # a half-made entry of a crashed worker
                (staged / "entry").rename(entry)
            finally:
                await asyncio.to_thread(shutil.rmtree, staged, True)
        finally:
            os.close(lock)
        await asyncio.to_thread(self.evict, keep=entry)

    async def _check_tag(self, ref: ImageReference, entry: Path) -> None:
        """Re-pull a tag the registry now points elsewhere; jobs already running keep their image."""
        lock = await asyncio.to_thread(_lock, self.dir / "locks" / f"{entry.name}.lock", fcntl.LOCK_EX)
        try:
            if not self._check_due(entry):
                return  # another worker checked it while we waited
            scratch = self.dir / "tmp" / f"{entry.name}-check-{uuid.uuid4().hex[:8]}"
            scratch.mkdir()
            try:
                now_at = await remote_digest(ref, self.config, scratch)
            except ImageError as exc:
                log.warning("could not check tag %s (%s); using the cached image", ref, exc.message)
                now_at = None
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
            if now_at is None or now_at == _read(entry / "remote-digest"):
                (entry / "checked").touch()
                await asyncio.to_thread(self.sweep_retired)
                return
            log.info("tag %s moved to %s: pulling it again", ref, now_at)
            staged = await self._fetch(ref, entry.name)
            try:
                retired = self.dir / "tmp" / f"{entry.name}-retired-{uuid.uuid4().hex[:8]}"
                (entry / "ready").unlink(missing_ok=True)
                entry.rename(retired)  # mounted overlays keep their lower dir; leases keep their lock
                (staged / "entry").rename(entry)
            finally:
                await asyncio.to_thread(shutil.rmtree, staged, True)
        finally:
            os.close(lock)
        await asyncio.to_thread(self.evict, keep=entry)

    async def _fetch(self, ref: ImageReference, key: str) -> Path:
        """Pull and unpack into tmp/<key>-<id>/entry (ready to be renamed into place)."""
        tmp = self.dir / "tmp" / f"{key}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir(parents=True)
        try:
            started = time.monotonic()
            # The tag's digest before the copy: a later check compares with it (a push after it is
            # simply found at that check).
            tag_digest = ref.digest or await remote_digest(
                ref, self.config, tmp, attempts=self.config.pull_attempts
            )
            digest = await copy_to_layout(ref, tmp / "layout", self.config)
            info = await unpack(tmp / "layout", tmp / "bundle", digest)
            staged = tmp / "entry"
            staged.mkdir()
            (tmp / "bundle" / "rootfs").rename(staged / "rootfs")
            (staged / "image.json").write_text(info.to_json())
            (staged / "remote-digest").write_text(tag_digest)
            (staged / "checked").touch()
            (staged / "ready").write_text(str(ref))
        except BaseException:
            await asyncio.to_thread(shutil.rmtree, tmp, True)
            raise
        self.pulls += 1
        log.info("pulled image %s (%s, %d bytes) in %.2fs", ref, digest, info.size_bytes,
                 time.monotonic() - started)
        return tmp

    def evict(self, keep: Path | None = None) -> list[Path]:
        """Remove least recently used images not in use until the cache fits its size bound."""
        entries: list[tuple[float, int, Path]] = []
        for entry in (self.dir / "entries").iterdir():
            try:
                info = ImageInfo.from_json((entry / "image.json").read_text())
                entries.append(((entry / "ready").stat().st_mtime, info.size_bytes, entry))
            except (OSError, ValueError, TypeError):
                continue
        self.sweep_retired()
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
