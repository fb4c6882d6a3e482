"""The worker's side of its job spawner (`spawner_main.py`, a small process of its own).

A start there costs the worker's event loop one message out and one in, instead of the vfork wait (the
parent of a vfork waits for its child's exec: on busy cores, most of what a short job costs the worker's
thread), the cgroup join and leave around it, and the reap. Used by the host runtime, whose starts need
nothing else of the worker's (no network namespace to enter, no sandbox gate to open).

If the spawner dies, the starts waiting for it fail (the job ends in error, "could not start"), the jobs
it started are killed (no one could report their exit) and the next start starts a new spawner.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import itertools
import logging
import os
import pickle
import signal
import socket
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from corral.runtimes import cgroups

log = logging.getLogger(__name__)

MAIN = Path(__file__).with_name("spawner_main.py")
MAX_REPLY = 1 << 20
SPAWNER_GONE = "the worker's job spawner exited"


class SpawnedProcess:
    """A job's first process, started and reaped by the spawner (a JobProcess for the runtimes)."""

    def __init__(self, pid: int, loop: asyncio.AbstractEventLoop) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self.lost: str | None = None  # why its end is unknown (the spawner died): it was killed
        self._exited: asyncio.Future[int] = loop.create_future()

    def exited(self, code: int) -> None:
        if self.returncode is None:
            self.returncode = code
            self._exited.set_result(code)

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)


class JobSpawner:
    """Starts jobs through the spawner process (started at the first job, again after it dies)."""

    def __init__(self) -> None:
        self._sock: socket.socket | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._seq = itertools.count(1)
        self._starts: dict[int, asyncio.Future[SpawnedProcess]] = {}
        self._running: dict[int, SpawnedProcess] = {}
        self._drained: asyncio.Future[None] | None = None  # set when a full socket takes messages again

    @property
    def pid(self) -> int | None:
        """The spawner process's pid while it runs."""
        return self._proc.pid if self._proc is not None and self._sock is not None else None

    @property
    def in_flight(self) -> int:
        """Starts sent whose reply (started or failed) has not come yet, cancelled ones included."""
        return len(self._starts)

    def _ensure(self) -> socket.socket:
        if self._sock is not None:
            return self._sock
        loop = asyncio.get_running_loop()
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            self._proc = subprocess.Popen(
                [sys.executable, "-I", "-S", str(MAIN), str(theirs.fileno()), str(os.getpid())],
                pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, close_fds=True,
                process_group=0,  # a Ctrl-C at the worker's terminal is the worker's to handle
            )
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        cgroups.spare(self._proc.pid)  # its starter threads sit in a job's cgroups while they start it
        ours.setblocking(False)
        loop.add_reader(ours.fileno(), self._readable)
        self._sock, self._loop = ours, loop
        return ours

    async def spawn(
        self, argv: Sequence[str], *, env: dict[str, str], stdout: int, cwd: Path | None,
        enter: Sequence[str | Path] = (), home: Sequence[str | Path] = (),
    ) -> SpawnedProcess:
        """Start `argv` (born in the `enter` cgroups); OSError if it cannot start."""
        sock = self._ensure()
        seq = next(self._seq)
        request = ("spawn", seq, list(argv), env, None if cwd is None else str(cwd),
                   [os.fspath(p) for p in enter], [os.fspath(p) for p in home])
        data = pickle.dumps(request, pickle.HIGHEST_PROTOCOL)
        output = [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [stdout]))]
        while True:
            try:
                sock.sendmsg([data], output)
                break
            except BlockingIOError:  # the spawner is behind (a burst of starts): wait until it reads some
                await self._writable(sock)
            except OSError as exc:
                raise OSError(exc.errno, f"cannot reach the worker's job spawner: {exc.strerror}") from exc
        started: asyncio.Future[SpawnedProcess] = asyncio.get_running_loop().create_future()
        self._starts[seq] = started
        return await started  # cancelled: a process that starts anyway is killed on arrival (_started)

    async def _writable(self, sock: socket.socket) -> None:
        """Until the socket takes messages again (or closes); every start waiting shares one watch."""
        if self._drained is None:
            loop = asyncio.get_running_loop()
            drained = self._drained = loop.create_future()

            def ready() -> None:
                loop.remove_writer(sock.fileno())
                self._drained = None
                if not drained.done():
                    drained.set_result(None)

            loop.add_writer(sock.fileno(), ready)
        await asyncio.shield(self._drained)

    def _readable(self) -> None:
        sock = self._sock
        assert sock is not None
        while True:
            try:
                data = sock.recv(MAX_REPLY)
            except BlockingIOError:
                return
            except OSError as exc:
                log.error("job spawner: %s", exc)
                data = b""
            if not data:
                self._lost()
                return
            for reply in pickle.loads(data):
                self._reply(reply)

    def _reply(self, reply: tuple[Any, ...]) -> None:
        kind = reply[0]
        if kind == "started":
            self._started(reply[1], reply[2])
        elif kind == "exited":
            _, pid, code = reply
            proc = self._running.pop(pid, None)
            if proc is not None:
                proc.exited(code)
        elif kind == "failed":
            _, seq, errno, text = reply
            waiter = self._starts.pop(seq, None)
            if waiter is not None and not waiter.done():
                waiter.set_exception(OSError(errno, text) if errno else OSError(text))

    def _started(self, seq: int, pid: int) -> None:
        assert self._loop is not None
        proc = SpawnedProcess(pid, self._loop)
        self._running[pid] = proc
        waiter = self._starts.pop(seq, None)
        if waiter is None or waiter.done():  # the start was cancelled meanwhile: nothing will wait for it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            return
        waiter.set_result(proc)

    def _lost(self) -> None:
        """The spawner is gone: its starts fail; its jobs are killed (their exits can no longer be known)."""
        self._close_socket()
        if self._proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(1)
            log.error("%s (exit code %s): %d starts fail, %d running jobs are killed",
                      SPAWNER_GONE, self._proc.returncode, len(self._starts), len(self._running))
            cgroups.unspare(self._proc.pid)  # gone for us (its socket closed): a kill may take it now
            self._proc = None
        self._forget(f"{SPAWNER_GONE} while the job ran: the job was killed")

    def _forget(self, why: str) -> None:
        starts, self._starts = self._starts, {}
        for waiter in starts.values():
            if not waiter.done():
                waiter.set_exception(OSError(SPAWNER_GONE))
        running, self._running = self._running, {}
        for pid, proc in running.items():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            proc.lost = why
            proc.exited(-signal.SIGKILL)

    def _close_socket(self) -> None:
        if self._sock is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._sock.fileno())
                if self._drained is not None:  # starts waiting to send try again, and find it closed
                    self._loop.remove_writer(self._sock.fileno())
                    if not self._drained.done():
                        self._drained.set_result(None)
                    self._drained = None
            self._sock.close()
            self._sock = None

    async def close(self) -> None:
        """Stop the spawner (its socket closed, it exits). Jobs still running then are killed: no one
        would learn of their end (the runtime's own close comes after its jobs have ended). The spawner
        kills the ones it started whose reply was never read here (spawner_main.Spawner.close)."""
        self._close_socket()
        proc, self._proc = self._proc, None
        self._forget("the worker's runtime closed while the job ran: the job was killed")
        if proc is not None:
            try:
                await asyncio.to_thread(proc.wait, 5)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
            cgroups.unspare(proc.pid)


__all__ = ["SPAWNER_GONE", "JobSpawner", "SpawnedProcess"]
