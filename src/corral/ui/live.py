"""Live updates: one in-process publisher fed by the driver's committed ticks, fanned out to open pages.

The driver calls `publish` after each tick. For every batch that has open pages, one render task reads
the batch once (at most one read per `min_interval`, less often when reading it is slow) and hands the
same rendered fragment to every page watching it; pages never poll the store on a timer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from corral.driver.changes import BatchChanges

log = logging.getLogger("corral.ui.live")

# batch id -> its summary fragment for every open page (None: the batch is gone)
Renderer = Callable[[int], Awaitable["BatchUpdate | None"]]


@dataclass(frozen=True)
class BatchUpdate:
    summary_html: str
    complete: bool


@dataclass(eq=False)  # one per open page, kept in sets by identity
class Subscription:
    batch_id: int
    jobs: set[int] | None = field(default_factory=set)  # changed since last read; None: any
    update: BatchUpdate | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)

    def deliver(self, update: BatchUpdate, jobs: set[int] | None) -> None:
        self.update = update
        if jobs is None or self.jobs is None:
            self.jobs = None
        else:
            self.jobs |= jobs
        self.ready.set()

    def take(self) -> tuple[BatchUpdate | None, set[int] | None]:
        update, jobs = self.update, self.jobs
        self.update, self.jobs = None, set()
        self.ready.clear()
        return update, jobs


class BatchFeed:
    def __init__(self, min_interval: float = 0.5) -> None:
        self.min_interval = min_interval
        self.render: Renderer | None = None
        self._subs: dict[int, set[Subscription]] = {}
        self._pending: BatchChanges = {}
        self._tasks: dict[int, asyncio.Task[None]] = {}
        self.renders = 0  # how many times a batch was read for its pages (bench, tests)
        self.closed = False

    @property
    def n_subscribers(self) -> int:
        return sum(len(s) for s in self._subs.values())

    def publish(self, changes: BatchChanges) -> None:
        """From the driver, after a committed tick: cheap, never blocks, never raises."""
        for batch_id, jobs in changes.items():
            if batch_id not in self._subs:
                continue
            if batch_id in self._pending:
                known = self._pending[batch_id]
                self._pending[batch_id] = None if known is None or jobs is None else known | jobs
            else:
                self._pending[batch_id] = None if jobs is None else set(jobs)
            if batch_id not in self._tasks:
                self._tasks[batch_id] = asyncio.get_running_loop().create_task(self._fan_out(batch_id))

    async def _fan_out(self, batch_id: int) -> None:
        try:
            while batch_id in self._pending:
                jobs = self._pending.pop(batch_id)
                subs = self._subs.get(batch_id)
                if not subs or self.render is None:
                    break
                started = time.monotonic()
                try:
                    update = await self.render(batch_id)
                except Exception:  # a page must not take the driver down; the next tick retries
                    log.exception("rendering live update of batch %d failed", batch_id)
                    update = None
                self.renders += 1
                if update is not None:
                    for sub in list(self._subs.get(batch_id, ())):
                        sub.deliver(update, jobs)
                # A batch that is costly to read (a huge one) is read less often: at most ~20 % of the time.
                await asyncio.sleep(max(self.min_interval, 4 * (time.monotonic() - started)))
        finally:
            self._tasks.pop(batch_id, None)

    @contextlib.asynccontextmanager
    async def subscribe(self, batch_id: int) -> AsyncIterator[Subscription]:
        sub = Subscription(batch_id)
        self._subs.setdefault(batch_id, set()).add(sub)
        try:
            yield sub
        finally:
            subs = self._subs.get(batch_id)
            if subs is not None:
                subs.discard(sub)
                if not subs:
                    del self._subs[batch_id]

    def close_streams(self) -> None:
        """The server is stopping: every open stream ends now (an open page would hold it up)."""
        self.closed = True
        for subs in self._subs.values():
            for sub in subs:
                sub.ready.set()

    async def close(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
