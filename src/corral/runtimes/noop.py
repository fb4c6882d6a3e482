"""A runtime that starts nothing and succeeds at once: measures the scheduler, not the jobs."""

from __future__ import annotations

import asyncio

from corral.runtimes.base import MainRequest, MainResult, Runtime, now
from corral.runtimes.registry import register


@register
class NoopRuntime(Runtime):
    name = "noop"
    uses_scratch = False

    async def run(self, request: MainRequest, cancel: asyncio.Event) -> MainResult:
        t = now()
        if cancel.is_set():
            return MainResult(state="cancelled", start=t, end=t)
        return MainResult(state="succeeded", start=t, end=t, exit_code=0)
