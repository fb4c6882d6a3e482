"""Watching and killing a job's process tree: shared by every runtime that starts processes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Literal

from corral.runtimes.base import UsageSink
from corral.runtimes.cgroups import JobCgroup
from corral.runtimes.spawn import JobProcess

log = logging.getLogger(__name__)

SAMPLE_INTERVAL = 1.0  # seconds between usage samples while a job runs
Outcome = Literal["exited", "cancelled", "timeout"]


def sampling(group: JobCgroup, sink: UsageSink | None) -> Callable[[], None]:
    """The periodic sample: the cgroup's own bookkeeping, then (time, cpu seconds, memory) to `sink`."""

    def sample() -> None:
        group.sample()
        if sink is not None:
            sink(time.time(), group.usage().cpu_seconds, group.memory_now())

    return sample


async def wait_for_exit(
    proc: JobProcess, cancel: asyncio.Event, timeout: float | None, sample: Callable[[], None]
) -> Outcome:
    """Until the process exits, `cancel` is set or `timeout` passes; `sample()` runs every second."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    exited = asyncio.ensure_future(proc.wait())
    cancelled = asyncio.ensure_future(cancel.wait())
    try:
        while True:
            step = SAMPLE_INTERVAL
            if deadline is not None:
                step = min(step, deadline - loop.time())
                if step <= 0:
                    return "timeout"
            done, _ = await asyncio.wait(
                {exited, cancelled}, timeout=step, return_when=asyncio.FIRST_COMPLETED
            )
            if exited in done:
                return "exited"
            if cancelled in done:
                return "cancelled"
            sample()
    finally:
        for task in (exited, cancelled):
            task.cancel()


async def kill_until_gone(
    proc: JobProcess, kill_members: Callable[[], None], members: Callable[[], list[int]],
    what: str,
) -> None:
    """SIGKILL the job's processes (its cgroup) and the started process's session until none is left."""
    for _ in range(500):
        kill_members()
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.shield(proc.wait()), 0.01)
        if proc.returncode is not None and not members():
            return
    log.warning("processes of a killed %s are still alive after 5 s: %s", what, members())


def kill_pids(pids: list[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)
