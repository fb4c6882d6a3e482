"""Attempts' scratch removed off the hot path: renamed into the work dir's trash as each attempt ends (one
`rename`), deleted in batches by a background task, each batch by an `rm -rf` of its own (a thread of the
worker deleting them held its GIL between system calls, and the worker's loop waited at each of its own).

Crash-safe without bookkeeping: the trash lives in the worker's work dir, so what a killed worker had
not yet deleted is removed with the rest of its leftovers — by the next worker on the same work dir
(`ScratchLayout.prepare`) or by a sibling that finds the dead worker's lock free
(`cleanup.clean_dead_siblings`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import shutil
from pathlib import Path

log = logging.getLogger(__name__)

WINDOW = 0.5  # seconds to gather ended attempts into one removal (disk space comes back this late)
BATCH = 256  # ... or fewer, when this many are waiting


RM = shutil.which("rm")
ARGS_AT_ONCE = 256  # paths on one `rm` command line
NICE = 19  # the `rm`'s niceness: the least CPU share while anything else wants it


def remove_all(paths: list[Path]) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


async def remove_in_child(paths: list[Path]) -> None:
    """Delete `paths` (absolute) in an `rm -rf` of their own, ARGS_AT_ONCE at a time; without `rm`, in
    a thread. Errors are ignored, as the next worker's cleanup removes whatever is left."""
    if RM is None:
        await asyncio.to_thread(remove_all, paths)
        return
    for at in range(0, len(paths), ARGS_AT_ONCE):
        rm = await asyncio.create_subprocess_exec(
            RM, "-rf", "--", *map(str, paths[at : at + ARGS_AT_ONCE]),
            stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        with contextlib.suppress(OSError):  # deleting is never urgent: jobs starting come first
            os.setpriority(os.PRIO_PROCESS, rm.pid, NICE)
        await rm.wait()


class ScratchSweeper:
    def __init__(self, trash: Path, *, window: float = WINDOW, batch: int = BATCH) -> None:
        self.trash = trash
        self.window, self.batch = window, batch
        self._pending: list[Path] = []
        self._wake = asyncio.Event()
        self._names = itertools.count()
        self.removed = 0  # attempt dirs deleted (for tests and the bench)
        self.sweeps = 0  # removal batches run

    def discard(self, root: Path) -> None:
        """Hand over an ended attempt's dir; it leaves the jobs dir now and is deleted with the next batch."""
        target = self.trash / f"{root.name}.{os.getpid()}.{next(self._names)}"
        try:
            root.rename(target)
        except FileNotFoundError:
            return  # never created (e.g. the attempt failed before its scratch was made)
        except OSError as exc:  # e.g. a mount left inside: deleted where it is (leftovers: the next worker)
            log.debug("could not move %s to the trash (%s): removed in place", root, exc)
            target = root
        self._pending.append(target)
        self._wake.set()

    def __len__(self) -> int:
        return len(self._pending)

    async def run(self) -> None:
        """Delete what is discarded, in batches, until cancelled (then `flush`)."""
        while True:
            await self._wake.wait()
            if len(self._pending) < self.batch:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._full(), self.window)
            self._wake.clear()
            await self._sweep()

    async def _full(self) -> None:
        while len(self._pending) < self.batch:
            self._wake.clear()
            await self._wake.wait()

    async def _sweep(self) -> None:
        batch, self._pending = self._pending, []
        if batch:
            await remove_in_child(batch)
            self.removed += len(batch)
            self.sweeps += 1

    async def flush(self) -> None:
        """Delete everything discarded so far (a worker's last act; a crash leaves it to the next worker)."""
        await self._sweep()
