"""The C library's calls Python's os module lacks (setns, mount), loaded once per process."""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os

CLONE_NEWNET = 0x40000000


@functools.cache
def libc() -> ctypes.CDLL:
    # Loaded once: a CDLL per call cost a spawner thread ~0.1 ms per job (py-spy of the worker).
    return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def enter_netns(fd: int, what: str = "setns") -> None:
    """This thread into the network namespace open at `fd`; OSError if it cannot."""
    if libc().setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")
