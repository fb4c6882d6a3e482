"""Bounded scratch for jobs that request no storage: ext4 volumes of the site's default size, pooled.

A job that names no `storage` still gets /io and /tmp on a volume of `[jobs] default_storage` bytes, so
filling them fails the job ("No space left"), never the host's disk. Making a volume (mkfs + loop
mount, ~50-150 ms) is too slow for every job, so a worker keeps made ones: a job borrows one as a
symlink from its scratch (its sandbox binds the volume's real path; a bind mount and its lazy unmount per
job cost the worker more than the job's sandbox start), and when its attempt ends the volume is emptied
off the job's path (trimmed if its loop file grew, so the host's disk gets freed blocks back) and lent
again.
Volumes live under <work_dir>/volumes, so a dead worker's are cleared with its work dir
(worker/cleanup.py). Jobs that request storage keep their own volume of that size.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from corral.runtimes.spawn import spawn
from corral.runtimes.volume import mount_io_volume, unmount_io_volume, volume_file

log = logging.getLogger(__name__)
# Emptied volumes kept for the next jobs, at least; while more jobs than that run, as many as run are kept
# (a stream of short jobs reuses them instead of making and unmaking one per job). A burst's excess is
# unmade as its jobs end.
KEEP_READY = 4
# The pool stays as large as the most volumes lent at once in this many seconds: between one job's end and
# the next one's start (a round trip to the driver) fewer are lent, and unmaking the "excess" then meant a
# mkfs for the next job (a quarter of the volumes a stream of short jobs used were made for it).
PEAK_HOLD = 30.0
RETURN_WAIT = 1.0  # seconds a job waits for a volume being emptied before it makes one (mkfs: 50-150 ms)


def _empty(volume: Path) -> None:
    """Remove what the last job left (as root: whatever modes it set); the file system stays."""
    for child in list(volume.iterdir()):
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            with contextlib.suppress(OSError):
                child.unlink()


def _emptied_inline(volume: Path, most: int = 4) -> bool:
    """What a job that wrote nothing leaves (its empty io and tmp) removed here: a few syscalls, cheaper
    than a thread hop. False, with only empty directories removed, when there is more to do."""
    with os.scandir(volume) as entries:
        children = [entry for _, entry in zip(range(most + 1), entries, strict=False)]
    if len(children) > most:
        return False
    for entry in children:
        if not entry.is_dir(follow_symlinks=False):
            return False
        try:
            os.rmdir(entry.path)
        except OSError:  # not empty
            return False
    return True


async def _trim(volume: Path) -> None:
    """Give the host back the blocks the last job freed (holes in the sparse loop file); best effort."""
    fstrim = shutil.which("fstrim") or "/sbin/fstrim"
    try:
        devnull = os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)
        try:  # started off the event loop, as jobs are: one per ended job
            proc = await spawn([fstrim, str(volume)], env=os.environ, stdout=devnull)
        finally:
            os.close(devnull)
        await proc.wait()
    except OSError as exc:
        log.debug("fstrim %s: %s", volume, exc)


def _allocated(volume: Path) -> int:
    """Blocks of the host's disk the volume's sparse loop file holds (-1 if it cannot be read)."""
    try:
        return os.stat(volume_file(volume)).st_blocks
    except OSError:
        return -1


class DefaultVolumes:
    def __init__(self, root: Path, size: int) -> None:
        self.root = root
        self.size = size
        self._ready: list[Path] = []
        self._lent: dict[Path, Path] = {}  # the attempt's volume dir -> the pooled volume bound there
        self._names = itertools.count()
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self._recycling = 0  # volumes being emptied: ready again in a few ms
        self._refilling = False  # a spare volume is being made
        self._returned = asyncio.Event()
        self.made = 0  # volumes made (for tests and benches)
        self.trims = 0  # fstrim runs (for tests and benches)
        self._trimmed: dict[Path, int] = {}  # pooled volume -> its loop file's allocated blocks when trimmed
        self._peak, self._peak_at = 0, 0.0  # most volumes lent at once lately, and when

    def lent(self, volume: Path) -> bool:
        return volume in self._lent

    async def lend(self, volume: Path) -> None:
        """Bind a ready (empty) volume of the default size at `volume`; OSError if none can be made."""
        if not self._ready and self._recycling:
            await self._wait_for_return()
        pooled = self._ready.pop() if self._ready else await self._make()
        # Relative: short enough for the inode to hold it (no block on the host's disk to allocate now and
        # free, maybe with a discard, when the job ends).
        target = os.path.relpath(pooled.absolute(), volume.absolute().parent)
        try:
            volume.symlink_to(target)
        except OSError:
            self._ready.append(pooled)
            raise
        self._lent[volume] = pooled
        self._note_peak()
        if not self._ready and not self._recycling:  # the next job should not wait for mkfs
            self._background(self._refill())

    def _note_peak(self) -> int:
        """The most volumes lent at once in the last PEAK_HOLD seconds (then it decays to what is lent)."""
        now, lent = time.monotonic(), len(self._lent)
        if lent >= self._peak or now - self._peak_at > PEAK_HOLD:
            self._peak, self._peak_at = lent, now
        return self._peak

    async def _wait_for_return(self) -> None:
        """Until a volume being emptied is ready (or RETURN_WAIT passes: then the caller makes one)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + RETURN_WAIT
        while not self._ready and self._recycling and loop.time() < deadline:
            self._returned.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._returned.wait(), deadline - loop.time())

    def give_back(self, volume: Path) -> None:
        """Take `volume` back (the job is over); it is emptied in the background, then lent again."""
        pooled = self._lent.pop(volume, None)
        if pooled is None:
            return
        with contextlib.suppress(FileNotFoundError):
            volume.unlink()
        self._recycling += 1
        self._background(self._recycle(pooled))

    async def warm(self) -> None:
        """One volume made ahead, so the first job does not wait for it either."""
        self._background(self._refill())

    async def settle(self) -> None:
        """Until the background work is done: every returned volume emptied and back (or unmade), any
        spare made."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def close(self) -> None:
        self._closed = True
        await self.settle()
        for volume in list(self._lent):
            self.give_back(volume)
        await self.settle()
        for pooled in self._ready:
            with contextlib.suppress(OSError):
                await asyncio.to_thread(unmount_io_volume, pooled)
        self._ready.clear()
        with contextlib.suppress(OSError):
            shutil.rmtree(self.root)

    def _background(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _make(self) -> Path:
        pooled = self.root / f"v{next(self._names)}"
        pooled.mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o700)
        await mount_io_volume(pooled, self.size)
        self._trimmed[pooled] = _allocated(pooled)  # new: trimmed only once a job's writes grow it
        self.made += 1
        return pooled

    async def _refill(self) -> None:
        if self._closed or self._ready or self._refilling:
            return
        self._refilling = True  # one spare at a time: a burst of lends would start one each
        try:
            self._ready.append(await self._make())
        except OSError as exc:
            log.warning("could not make a default storage volume ahead: %s", exc)
        finally:
            self._refilling = False

    async def _recycle(self, pooled: Path) -> None:
        try:
            await self._empty_and_keep(pooled)
        finally:
            self._recycling -= 1
            self._returned.set()

    async def _empty_and_keep(self, pooled: Path) -> None:
        try:
            if _emptied_inline(pooled):
                left = False
            else:
                await asyncio.to_thread(_empty, pooled)
                left = any(pooled.iterdir())  # never lend a volume holding the last job's files
        except OSError as exc:
            log.warning("could not empty storage volume %s: %s", pooled, exc)
            left = True
        # Trim only if the loop file grew since its last trim (after the job's files are unlinked, every
        # write of the job has reached it): a job that wrote nothing costs no fstrim process.
        if not left and not self._closed and _allocated(pooled) != self._trimmed.get(pooled):
            await _trim(pooled)
            self.trims += 1
            self._trimmed[pooled] = _allocated(pooled)
        # `_recycling` counts this one: every volume the pool has, against what it keeps.
        owned = len(self._ready) + len(self._lent) + self._recycling
        excess = owned > max(KEEP_READY, self._note_peak() + 1)  # + the spare made while all are lent
        if left or self._closed or excess:
            self._trimmed.pop(pooled, None)
            with contextlib.suppress(OSError):
                await asyncio.to_thread(unmount_io_volume, pooled)
            return
        self._ready.append(pooled)
