"""Attempts' scratch removed off the hot path: renamed into the work dir's trash as each attempt ends (one
`rename`), deleted in batches by a background task.

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


def remove_all(paths: list[Path]) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


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
            await asyncio.to_thread(remove_all, batch)
            self.removed += len(batch)
            self.sweeps += 1

    async def flush(self) -> None:
        """Delete everything discarded so far (a worker's last act; a crash leaves it to the next worker)."""
        await self._sweep()
