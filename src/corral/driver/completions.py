"""Clients waiting for a batch to complete (GET /api/v1/batches/{id}?wait=S): the tick that completes the
batch wakes them, so `wait` returns the moment a batch is done, without polling the store meanwhile."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable


class BatchCompletions:
    def __init__(self) -> None:
        self._waiting: dict[int, set[asyncio.Future[None]]] = {}

    def completion_of(self, batch_id: int) -> asyncio.Future[None]:
        """A future set when a tick completes `batch_id` from now on; cancel it when no longer waiting."""
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(batch_id, set()).add(future)
        future.add_done_callback(lambda f: self._forget(batch_id, f))
        return future

    def completed(self, batch_ids: Iterable[int]) -> None:
        for batch_id in batch_ids:
            for future in self._waiting.pop(batch_id, set()):
                if not future.done():
                    future.set_result(None)

    def _forget(self, batch_id: int, future: asyncio.Future[None]) -> None:
        waiting = self._waiting.get(batch_id)
        if waiting is not None:
            waiting.discard(future)
            if not waiting:
                del self._waiting[batch_id]

    def __len__(self) -> int:
        """Futures still waiting (for tests: a finished wait leaves none behind)."""
        return sum(len(w) for w in self._waiting.values())
