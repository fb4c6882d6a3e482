"""Which attempts this worker handles: the `known` list of every poll, and their cancel switches."""

from __future__ import annotations

import asyncio


class AttemptLedger:
    """An attempt is known from assignment until the driver acknowledges its completion."""

    def __init__(self) -> None:
        self._running: dict[str, asyncio.Event] = {}
        self._unacked: set[str] = set()

    def known(self) -> list[str]:
        return [*self._running, *sorted(self._unacked)]

    def handles(self, key: str) -> bool:
        return key in self._running or key in self._unacked

    def accept(self, key: str) -> asyncio.Event | None:
        """Start tracking a new attempt; None if it is already handled (a repeated assignment)."""
        if self.handles(key):
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
        self._unacked.discard(key)

    @property
    def running(self) -> list[str]:
        return list(self._running)

    def __len__(self) -> int:
        return len(self._running) + len(self._unacked)
