"""A job's output, capped on disk while it runs: the head and the tail are kept, the cut is marked.

The job writes into a pipe the worker's event loop reads (no thread per job): the first `head` bytes go
to the log file as they come, after that only the last `tail` bytes are kept in memory. At the end the
file holds head, a marker naming how many bytes were dropped, and the tail: a 200 MB print costs at
most head + tail on disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

HEAD_BYTES = 1024 * 1024
TAIL_BYTES = 8 * 1024 * 1024
CHUNK = 256 * 1024


async def read_pipe(fd: int, enough: Callable[[bytes], bool]) -> bytes:
    """Read a pipe from the event loop until `enough(data)` or end of file."""
    loop = asyncio.get_running_loop()
    os.set_blocking(fd, False)
    data = bytearray()
    done: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        try:
            chunk = os.read(fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        data.extend(chunk)
        if (not chunk or enough(bytes(data))) and not done.done():
            done.set_result(None)

    loop.add_reader(fd, readable)
    try:
        await done
    finally:
        loop.remove_reader(fd)
    return bytes(data)


class CappedLog:
    """`fd = log.open()`, the child's stdout and stderr; then `log.child_started()`; `await log.close()`."""

    def __init__(self, path: Path, *, head: int = HEAD_BYTES, tail: int = TAIL_BYTES) -> None:
        self.path = path
        self.head = head
        self.tail = tail
        self.total = 0
        self.written = 0
        self._out: BinaryIO | None = None
        self._read_fd = -1
        self._write_fd = -1
        self._tail = bytearray()
        self._eof: asyncio.Future[None] | None = None

    def open(self) -> int:
        self._read_fd, self._write_fd = os.pipe()
        return self._write_fd

    def child_started(self) -> None:
        """Close the worker's copy of the write end (the child has its own) and start copying."""
        os.close(self._write_fd)
        self._write_fd = -1
        loop = asyncio.get_running_loop()
        self._out = open(self.path, "ab", buffering=0)  # noqa: SIM115 - closed in close(); readable live
        self._eof = loop.create_future()
        os.set_blocking(self._read_fd, False)
        loop.add_reader(self._read_fd, self._readable)

    def _readable(self) -> None:
        assert self._out is not None and self._eof is not None
        try:
            chunk = os.read(self._read_fd, CHUNK)
        except BlockingIOError:
            return
        except OSError:
            chunk = b""
        if not chunk:
            asyncio.get_running_loop().remove_reader(self._read_fd)
            if not self._eof.done():
                self._eof.set_result(None)
            return
        self.total += len(chunk)
        room = max(0, self.head - self.written)  # `written`: this output's bytes in the head
        if room:
            self._out.write(chunk[:room])
            self.written += min(room, len(chunk))
            chunk = chunk[room:]
        if chunk:
            self._tail += chunk
            if len(self._tail) > 2 * self.tail:  # trim in big steps: amortised O(1) per byte
                del self._tail[: len(self._tail) - self.tail]

    async def close(self) -> None:
        """Wait until the child's output is all read (its last writer gone), then finish the file."""
        if self._write_fd >= 0:
            os.close(self._write_fd)
            self._write_fd = -1
        if self._eof is not None:
            await self._eof
        if self._out is not None:
            kept = bytes(self._tail[-self.tail:]) if self._tail else b""
            dropped = self.total - self.written - len(kept)
            if dropped > 0:
                marker = f"\n[corral: log cut, {dropped} bytes dropped here; head and tail kept]\n"
                self._out.write(marker.encode())
            self._out.write(kept)
            self._out.close()
            self._out = None
        with contextlib.suppress(OSError):
            if self._read_fd >= 0:
                os.close(self._read_fd)
        self._read_fd = -1
