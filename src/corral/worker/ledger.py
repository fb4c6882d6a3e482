"""Which attempts this worker handles: the `known` list of every poll, and their cancel switches."""

from __future__ import annotations

import asyncio
from collections import OrderedDict

REMEMBERED = 100_000  # acknowledged attempts remembered, so a late duplicate assignment never reruns one


class AttemptLedger:
    """An attempt is known from assignment until the driver acknowledges its completion. Work arrives on
    two channels (poll replies and events replies), so a duplicate of an assignment may come after its
    attempt ended: the most recent acknowledged keys are remembered and never accepted again."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Event] = {}
        self._unacked: set[str] = set()
        self._done: OrderedDict[str, None] = OrderedDict()

    def known(self) -> list[str]:
        return [*self._running, *sorted(self._unacked)]

    def handles(self, key: str) -> bool:
        return key in self._running or key in self._unacked

    def accept(self, key: str) -> asyncio.Event | None:
        """Start tracking a new attempt; None if it is already handled (a repeated assignment)."""
        if self.handles(key) or key in self._done:
            return None
        cancel = asyncio.Event()
        self._running[key] = cancel
        return cancel

    def cancel(self, key: str) -> bool:
        """Ask a running attempt to stop; False if it is not running here (finished or unknown)."""
        event = self._running.get(key)
        if event is None:
            return False
        event.set()
        return True

    def finished(self, key: str) -> None:
        """The attempt ended and its completion is queued; it stays known until acknowledged."""
        if self._running.pop(key, None) is not None:
            self._unacked.add(key)

    def acknowledged(self, key: str) -> None:
        if key in self._unacked:
            self._unacked.discard(key)
            self._done[key] = None
            if len(self._done) > REMEMBERED:
                self._done.popitem(last=False)

    @property
    def running(self) -> list[str]:
        return list(self._running)

    def __len__(self) -> int:
        return len(self._running) + len(self._unacked)
