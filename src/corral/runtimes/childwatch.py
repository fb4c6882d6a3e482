"""Learning that a job's process exited without a thread per child: a pidfd in the event loop.

Python 3.11's default child watcher (ThreadedChildWatcher) starts a thread per subprocess that blocks
in waitpid() and hops back to the loop: a thread start per job, and its wake-up latency on a busy
machine. Linux (5.3+) gives a process file descriptor that turns readable when the process exits, so
the loop that started the child watches it like any other fd. The stdlib's PidfdChildWatcher of 3.11
is bound to one loop; this one uses whichever loop is running when the child is added (as Python 3.12
does), so a process with several loops (tests, threads) stays correct.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any, TypeVarTuple, Unpack

log = logging.getLogger(__name__)

_install_lock = threading.Lock()
_Ts = TypeVarTuple("_Ts")


class LoopPidfdWatcher(asyncio.AbstractChildWatcher):
    """Each child watched by a pidfd registered as a reader in the loop that started it."""

    def __init__(self) -> None:
        self._children: dict[int, tuple[asyncio.AbstractEventLoop, int]] = {}

    def add_child_handler(
        self, pid: int, callback: Callable[[int, int, Unpack[_Ts]], object], *args: *_Ts
    ) -> None:
        loop = asyncio.get_running_loop()
        pidfd = os.pidfd_open(pid)
        self._children[pid] = (loop, pidfd)
        loop.add_reader(pidfd, self._exited, pid, pidfd, callback, args)

    def _exited(self, pid: int, pidfd: int, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        entry = self._children.pop(pid, None)
        loop = entry[0] if entry is not None else asyncio.get_running_loop()
        loop.remove_reader(pidfd)
        try:
            _, status = os.waitpid(pid, 0)
        except ChildProcessError:  # reaped elsewhere: the status is lost, as the stdlib watchers report it
            log.warning("child process %d was reaped elsewhere: reporting exit code 255", pid)
            returncode = 255
        else:
            returncode = os.waitstatus_to_exitcode(status)
        os.close(pidfd)
        callback(pid, returncode, *args)

    def remove_child_handler(self, pid: int) -> bool:
        entry = self._children.pop(pid, None)
        if entry is None:
            return False
        loop, pidfd = entry
        with contextlib.suppress(Exception):
            loop.remove_reader(pidfd)
        os.close(pidfd)
        return True

    def attach_loop(self, loop: asyncio.AbstractEventLoop | None) -> None:
        pass  # not bound to a loop

    def close(self) -> None:
        pass

    def is_active(self) -> bool:
        return True

    def __enter__(self) -> LoopPidfdWatcher:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


def pidfd_usable() -> bool:
    """The kernel and Python both offer pidfd_open (Linux 5.3+)."""
    if not hasattr(os, "pidfd_open"):
        return False
    try:
        fd = os.pidfd_open(os.getpid())
    except OSError:
        return False
    os.close(fd)
    return True


def install_pidfd_watcher() -> bool:
    """Make asyncio watch subprocesses with pidfds, process-wide; False (nothing changed) where it cannot.

    Only for Python < 3.12 (3.12 does the same by itself and deprecates child watchers)."""
    if sys.version_info >= (3, 12) or sys.platform != "linux" or not pidfd_usable():
        return False
    with _install_lock, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        policy = asyncio.get_event_loop_policy()
        current = getattr(policy, "_watcher", None)
        if isinstance(current, LoopPidfdWatcher):
            return True
        asyncio.set_child_watcher(LoopPidfdWatcher())
    return True


__all__ = ["LoopPidfdWatcher", "install_pidfd_watcher", "pidfd_usable"]
