"""Starting a job's first process without stalling the worker's event loop.

Starting a process is synchronous: the parent waits in vfork() until the child has exec'd, and on a
busy machine the child may wait for a CPU first, so `asyncio.create_subprocess_exec` kept the worker's
loop (every other job's start, end and report) stalled for milliseconds per job. Here the start runs
in a small pool of spawner threads (the wait releases the GIL) and the loop learns of the exit through
a pidfd, as any other readable fd. Same process as before: `subprocess.Popen` with close_fds (only
stdout/stderr and `pass_fds` are inherited), its own session, stdin from /dev/null.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Protocol

from corral.runtimes.childwatch import pidfd_usable

log = logging.getLogger(__name__)

SPAWNER_THREADS = 2
_spawner: ThreadPoolExecutor | None = None
_spawner_lock = threading.Lock()


class JobProcess(Protocol):
    """What the runtimes need of a started process (asyncio's Process has it too)."""

    @property
    def pid(self) -> int: ...

    @property
    def returncode(self) -> int | None: ...

    async def wait(self) -> int: ...


class PidfdProcess:
    """A process started off the loop, reaped when its pidfd turns readable in the loop."""

    def __init__(self, popen: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self._popen = popen  # kept: a dropped running Popen would be reaped by subprocess's own cleanup
        self._loop = loop
        self._returncode: int | None = None
        self._exited: asyncio.Future[int] = loop.create_future()
        self._pidfd = os.pidfd_open(popen.pid)
        loop.add_reader(self._pidfd, self._reap)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._returncode

    def _reap(self) -> None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:  # reaped elsewhere: its status is lost
            log.warning("job process %d was reaped elsewhere: reporting exit code 255", self.pid)
            pid, code = self.pid, 255
        else:
            if pid == 0:
                return  # not exited yet
            code = os.waitstatus_to_exitcode(status)
        self._loop.remove_reader(self._pidfd)
        os.close(self._pidfd)
        self._returncode = self._popen.returncode = code
        if not self._exited.done():
            self._exited.set_result(code)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)


def _pool() -> ThreadPoolExecutor:
    global _spawner
    with _spawner_lock:
        if _spawner is None:
            _spawner = ThreadPoolExecutor(max_workers=SPAWNER_THREADS, thread_name_prefix="corral-spawn")
        return _spawner


def _kill_orphan(started: asyncio.Future[subprocess.Popen[bytes]]) -> None:
    """The spawning task was cancelled while the process started: kill its session and reap it."""
    if started.cancelled() or started.exception() is not None:
        return
    popen = started.result()
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, subprocess.TimeoutExpired):
        popen.wait(5)


def _start(
    argv: list[str], env: dict[str, str], stdout: int, cwd: Path | None, pass_fds: tuple[int, ...]
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT,
        start_new_session=True, pass_fds=pass_fds, close_fds=True,
    )


async def spawn(
    argv: Sequence[str], *, env: Mapping[str, str], stdout: int, cwd: Path | None = None,
    pass_fds: Sequence[int] = (),
) -> JobProcess:
    """Start `argv` in a new session (stdout and stderr to `stdout`); OSError if it cannot start."""
    loop = asyncio.get_running_loop()
    if not pidfd_usable():
        return await asyncio.create_subprocess_exec(
            *argv, env=env, cwd=cwd, stdin=asyncio.subprocess.DEVNULL, stdout=stdout,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True, pass_fds=pass_fds,
        )
    job = partial(_start, list(argv), dict(env), stdout, cwd, tuple(pass_fds))
    started = loop.run_in_executor(_pool(), job)
    try:
        popen = await asyncio.shield(started)
    except asyncio.CancelledError:
        # Cancelled while the start runs: wait for it (a moment: the caller closes the fds it passes
        # when this returns), then kill what started.
        while not started.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(started)
        _kill_orphan(started)
        raise
    try:
        return PidfdProcess(popen, loop)
    except OSError:
        _kill_orphan(started)
        raise


__all__ = ["JobProcess", "PidfdProcess", "spawn"]
