"""Events waiting for the driver's acknowledgement, sent in batches, resent until acknowledged."""

from __future__ import annotations

import asyncio
from typing import Any

Event = dict[str, Any]


class EventOutbox:
    def __init__(self) -> None:
        self._pending: list[Event] = []
        self._changed = asyncio.Event()

    def put(self, event: Event) -> None:
        self._pending.append(event)
        self._changed.set()

    def __len__(self) -> int:
        return len(self._pending)

    def batch(self, limit: int = 1000) -> list[Event]:
        """The oldest events, left in the outbox until `settle` hears they were acknowledged."""
        return self._pending[:limit]

    def settle(self, sent: list[Event], acked: list[str]) -> list[str]:
        """Drop the sent events whose keys were acknowledged; returns keys whose completion was acked."""
        acked_keys = set(acked)
        done = {id(e) for e in sent if e.get("key") in acked_keys}
        self._pending = [e for e in self._pending if id(e) not in done]
        self._changed.set()
        return [str(e["key"]) for e in sent if id(e) in done and e.get("type") == "completed"]

    async def wait_for_events(self, timeout: float | None = None) -> bool:
        """Until there is something to send (True) or `timeout` passes (False)."""
        while not self._pending:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout)
            except TimeoutError:
                return bool(self._pending)
        return True

    def only(self, kinds: frozenset[str]) -> bool:
        """Every waiting event is of these types."""
        return all(e.get("type") in kinds for e in self._pending)

    async def wait_for_other(self, kinds: frozenset[str], timeout: float) -> None:
        """Until an event of another type than `kinds` is waiting, or `timeout` passes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.only(kinds):
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), remaining)
            except TimeoutError:
                return

    async def wait_empty(self) -> None:
        while self._pending:
            self._changed.clear()
            await self._changed.wait()
