"""Events waiting for the driver's acknowledgement, sent in batches, resent until acknowledged.

More than one post may be on the wire at once (so an attempt's end does not wait for an unrelated post
to come back), but an attempt's events always arrive in order: while one of its events is in a post,
its later events wait for that post to settle (the driver keeps the first `started` it hears, and an
attempt's `completed` ends it: a `started` after it would be dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import Counter
from typing import Any

Event = dict[str, Any]


class EventOutbox:
    """`lazy` event types (an attempt's `started`) are held up to `lazy_window` seconds unless another
    event of their attempt (its end) is waiting too: a short job's start and end go in one post, and a
    start on the wire never holds back its attempt's end."""

    def __init__(self, lazy: frozenset[str] = frozenset(), lazy_window: float = 0.0) -> None:
        self._pending: list[Event] = []
        self._changed = asyncio.Event()
        self._sending: set[int] = set()  # id() of events in a post on the wire
        self._busy: Counter[str] = Counter()  # attempt key -> its events in posts on the wire
        self.lazy, self.lazy_window = lazy, lazy_window
        self._born: dict[int, float] = {}  # id() of waiting lazy events -> when they were put

    def put(self, event: Event) -> None:
        self._pending.append(event)
        if event.get("type") in self.lazy:
            self._born[id(event)] = time.monotonic()
        self._changed.set()

    def __len__(self) -> int:
        return len(self._pending)

    @property
    def in_flight(self) -> int:
        """Events in posts on the wire."""
        return len(self._sending)

    def _sendable(self) -> list[Event]:
        if not self._sending and not self._born:
            return self._pending
        young = self._young()
        return [
            e for e in self._pending
            if id(e) not in self._sending and e.get("key") not in self._busy and id(e) not in young
        ]

    def _young(self) -> set[int]:
        """Lazy events still inside their window with nothing else of their attempt waiting."""
        if not self._born:
            return set()
        limit = time.monotonic() - self.lazy_window
        young = {i for i, born in self._born.items() if born > limit}
        if young:
            others = {e.get("key") for e in self._pending if id(e) not in self._born}
            young = {id(e) for e in self._pending if id(e) in young and e.get("key") not in others}
        return young

    def _next_due(self) -> float | None:
        """Seconds until the oldest held lazy event may go, if one is held."""
        young = self._young()
        if not young:
            return None
        return max(0.0, min(self._born[i] for i in young) + self.lazy_window - time.monotonic())

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
            self._born.pop(id(e), None)  # went out once: resent as soon as possible
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
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._sendable():
            wait = self._next_due()
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                wait = remaining if wait is None else min(wait, remaining)
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), wait)
        return True

    async def wait_empty(self) -> None:
        while self._pending:
            self._changed.clear()
            await self._changed.wait()
