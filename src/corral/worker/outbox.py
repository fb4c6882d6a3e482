"""Events waiting for the driver's acknowledgement, sent in batches, resent until acknowledged.

More than one post may be on the wire at once (so an attempt's end does not wait for an unrelated post
to come back), but an attempt's events always arrive in order: while one of its events is in a post,
its later events wait for that post to settle (the driver keeps the first `started` it hears, and an
attempt's `completed` ends it: a `started` after it would be dropped).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any

Event = dict[str, Any]


class EventOutbox:
    def __init__(self) -> None:
        self._pending: list[Event] = []
        self._changed = asyncio.Event()
        self._sending: set[int] = set()  # id() of events in a post on the wire
        self._busy: Counter[str] = Counter()  # attempt key -> its events in posts on the wire

    def put(self, event: Event) -> None:
        self._pending.append(event)
        self._changed.set()

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def in_flight(self) -> int:
        """Events in posts on the wire."""
        return len(self._sending)

    def _sendable(self) -> list[Event]:
        if not self._sending:
            return self._pending
        return [e for e in self._pending if id(e) not in self._sending and e.get("key") not in self._busy]

    def batch(self, limit: int = 1000) -> list[Event]:
        """The oldest events that may be sent now (none of their attempt's events is on the wire)."""
        return self._sendable()[:limit]

    def take(self, limit: int = 1000) -> list[Event]:
        """`batch`, marked as on the wire until `settle` (or `release`)."""
        sent = self.batch(limit)
        for e in sent:
            self._sending.add(id(e))
            self._busy[str(e.get("key"))] += 1
        return sent

    def _unmark(self, sent: list[Event]) -> None:
        for e in sent:
            if id(e) in self._sending:
                self._sending.discard(id(e))
                key = str(e.get("key"))
                self._busy[key] -= 1
                if self._busy[key] <= 0:
                    del self._busy[key]

    def release(self, sent: list[Event]) -> None:
        """A post that failed: its events wait to be sent again."""
        self._unmark(sent)
        self._changed.set()

    def settle(self, sent: list[Event], acked: list[str]) -> list[str]:
        """Drop the sent events whose keys were acknowledged; returns keys whose completion was acked."""
        self._unmark(sent)
        acked_keys = set(acked)
        done = {id(e) for e in sent if e.get("key") in acked_keys}
        self._pending = [e for e in self._pending if id(e) not in done]
        self._changed.set()
        return [str(e["key"]) for e in sent if id(e) in done and e.get("type") == "completed"]

    async def wait_for_events(self, timeout: float | None = None) -> bool:
        """Until there is something to send now (True) or `timeout` passes (False)."""
        while not self._sendable():
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), timeout)
            except TimeoutError:
                return bool(self._sendable())
        return True

    def only(self, kinds: frozenset[str]) -> bool:
        """Every event that may be sent now is of these types."""
        return all(e.get("type") in kinds for e in self._sendable())

    async def wait_for_other(self, kinds: frozenset[str], timeout: float) -> None:
        """Until an event of another type than `kinds` may be sent, or `timeout` passes."""
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
