"""The job spawner: a small process of the worker's own that starts jobs' first processes and reaps them.

Run by the worker (`spawner.py`) with one end of a private socketpair; the standard library only (no
Corral import: it starts in a few tens of ms). It exists so that the worker's event loop never waits for
a start: a vfork parent waits until its child has exec'd, which on busy cores is most of a short job's
cost to the worker. Here that wait, the cgroup join and leave around it and every reap run on the other
core.

Messages are pickles over SOCK_SEQPACKET (one request a message; each reply a list, sent as soon as known):
  worker  -> spawner  ("spawn", seq, argv, env, cwd, enter, home), the job's output fd attached
  spawner -> worker   [("started", seq, pid) | ("failed", seq, errno, text) | ("exited", pid, code), ...]
`enter`: cgroup v1 `tasks` files the starting thread joins while it starts the job (the job is born in
them); `home`: the ones it goes back to (the worker's). A job runs in its own session, stdin from /dev/null,
stdout and stderr to the fd, every signal at its default, no other fd inherited (subprocess.Popen, as
the worker started jobs itself before). The spawner dies with the worker (PR_SET_PDEATHSIG) or as
soon as its socket closes; the jobs it started are the worker's to kill (their cgroups and sessions).
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import ctypes.util
import os
import pickle
import selectors
import signal
import socket
import subprocess
import sys
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

PR_SET_PDEATHSIG = 1
MAX_MESSAGE = 1 << 20
CURRENT_THREAD = b"0"  # written to a v1 `tasks` file: moves the writer alone (see spawn.py)
STARTERS = 2  # starts at once (Spawner): 2 and 4 start as fast on 2 cores, 2 with less CPU


class LeaveFailed(OSError):
    """This process could not go back to the worker's cgroups: it must not start anything else."""


def _write(path: str, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def _spawn(argv: list[str], env: dict[str, str], cwd: str | None, out: int) -> subprocess.Popen[bytes]:
    # subprocess, not os.posix_spawn: glibc's posix_spawn leaves its two internal signals ignored in the
    # job (and Python cannot ask it otherwise), where subprocess's own vfork child resets every signal.
    return subprocess.Popen(
        argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
        start_new_session=True, close_fds=True,
    )


class Homes:
    """The worker's own v1 `tasks` files, each opened once: a starter goes back to them after every start
    (the worker's cgroups last as long as it does; a job's are new or renamed for each job, so opened each
    time). Any thread."""

    def __init__(self) -> None:
        self.fds: dict[str, int] = {}
        self.lock = threading.Lock()

    def fd(self, path: str) -> int:
        fd = self.fds.get(path)
        if fd is None:
            with self.lock:
                fd = self.fds.get(path)
                if fd is None:
                    fd = self.fds[path] = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        return fd


def start(argv: list[str], env: dict[str, str], cwd: str | None, out: int,
          enter: list[str], home: list[str], homes: Homes) -> subprocess.Popen[bytes]:
    """The job's first process, born in the `enter` cgroups; this process back `home` before returning."""
    try:
        for path in enter:
            _write(path, CURRENT_THREAD)
        return _spawn(argv, env, cwd, out)
    finally:
        if enter:
            try:
                for path in home:
                    os.write(homes.fd(path), CURRENT_THREAD)
            except OSError as exc:
                raise LeaveFailed(exc.errno, f"cannot leave a job's cgroups: {exc.strerror}") from exc


class Spawner:
    """Requests are read by the main thread and started by STARTERS threads at once; the main thread reaps.

    A start mostly waits: a vfork parent until its child has exec'd, and a child born in a job's cpu
    cgroup then runs on (its parent, woken on the same core, waits for it): ~0.6 ms a start where a
    plain one takes 0.2 ms. Several threads overlap those waits. Each thread joins a job's v1 cgroups
    alone (CURRENT_THREAD), so starts in flight at once never share a cgroup.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        # Guards `children` and the socket: a job's "started" reply always goes out before its "exited".
        self.lock = threading.Lock()
        # Kept until reaped here: a Popen dropped while its process runs would be reaped by subprocess
        self.children: dict[int, subprocess.Popen[bytes]] = {}
        self.starters = ThreadPoolExecutor(STARTERS, thread_name_prefix="start")
        self.homes = Homes()
        self.closed = False  # the worker closed the socket: what is left, or still starting, is killed

    def requests(self) -> bool:
        """Every request waiting on the socket, handed to a starter; False once the worker closed it."""
        while True:
            try:
                data, ancdata, _, _ = self.sock.recvmsg(
                    MAX_MESSAGE, socket.CMSG_SPACE(4 * 4), socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC
                )
            except BlockingIOError:
                return True
            except ConnectionResetError:  # the worker closed with a reply of ours unread: closed all the same
                return False
            if not data:
                return False
            fds = array.array("i")
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            self.starters.submit(self.starter, pickle.loads(data), list(fds))

    def starter(self, request: tuple[Any, ...], fds: list[int]) -> None:
        """`handle` on a starter thread: what it does not expect ends this process, as it would the main
        thread's loop (the worker then fails its starts and kills its jobs), never a start left unanswered."""
        try:
            self.handle(request, fds)
        except BaseException:
            traceback.print_exc()
            os._exit(4)

    def handle(self, request: tuple[Any, ...], fds: list[int]) -> None:
        """One start, on a starter thread; its reply sent at once."""
        _, seq, argv, env, cwd, enter, home = request
        try:
            if not fds:
                raise OSError(9, "no output fd with the request")
            popen = start(argv, env, cwd, fds[0], enter, home, self.homes)
        except LeaveFailed as exc:
            self.send([("failed", seq, exc.errno or 0, str(exc))])
            os._exit(3)  # fail-closed: never start another job from inside a job's cgroups
        except OSError as exc:
            self.send([("failed", seq, exc.errno or 0, str(exc))])
        except (ValueError, TypeError) as exc:  # what Popen refuses (e.g. a NUL in an argument): this
            self.send([("failed", seq, 0, f"{exc}")])  # job fails to start, the others run on
        else:
            with self.lock:
                self.children[popen.pid] = popen
                if self.closed:  # started after the worker closed: no one would ever learn of its end
                    self._kill_locked()
                else:
                    self._send_locked([("started", seq, popen.pid)])
        finally:
            for fd in fds:
                os.close(fd)
        # Reap here too: this child may have exited before it was known (its SIGCHLD came too early), or a
        # failed start's child, reaped by Popen itself, held up the others.
        self.reap()

    def reap(self) -> None:
        """Reap the children that have exited, known ones only: one not yet registered by its starter
        stays a zombie until it is (its starter then reaps), and so do the ones after it. Any thread."""
        with self.lock:
            replies: list[tuple[Any, ...]] = []
            while self.children:
                try:
                    info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
                except ChildProcessError:
                    break
                if info is None or info.si_pid not in self.children:
                    break  # none exited, or one a starter has not registered yet (or Popen's own)
                pid, status = os.waitpid(info.si_pid, 0)
                code = os.waitstatus_to_exitcode(status)
                popen = self.children.pop(pid)
                popen.returncode = code
                replies.append(("exited", pid, code))
            if replies:
                self._send_locked(replies)

    def close(self) -> None:
        """The worker closed the socket (it stops, or its runtime closes): the jobs still running are
        killed, as the worker's side kills the ones it knows of; a start still in flight is killed when it
        returns. Any thread."""
        with self.lock:
            self.closed = True
            self._kill_locked()

    def _kill_locked(self) -> None:
        for pid, popen in list(self.children.items()):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
            with contextlib.suppress(ChildProcessError):
                popen.wait()
            del self.children[pid]

    def send(self, replies: list[tuple[Any, ...]]) -> None:
        with self.lock:
            self._send_locked(replies)

    def _send_locked(self, replies: list[tuple[Any, ...]]) -> None:
        with contextlib.suppress(OSError):  # the worker is gone: the main loop sees its socket close
            self.sock.sendall(pickle.dumps(replies, pickle.HIGHEST_PROTOCOL))


def _die_with_parent(parent: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:  # the worker died before the line above
        sys.exit(0)


def main(argv: list[str]) -> None:
    fd, parent = int(argv[1]), int(argv[2])
    _die_with_parent(parent)
    os.chdir("/")
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    sock = socket.socket(fileno=fd)
    os.set_inheritable(fd, False)
    spawner = Spawner(sock)
    selector = selectors.DefaultSelector()
    selector.register(sock, selectors.EVENT_READ)
    selector.register(wake_r, selectors.EVENT_READ)
    while True:
        for key, _ in selector.select():
            if key.fd == wake_r:
                with contextlib.suppress(BlockingIOError):
                    while os.read(wake_r, 4096):
                        pass
            elif not spawner.requests():
                spawner.close()
                spawner.starters.shutdown(wait=False, cancel_futures=True)
                return
        spawner.reap()


if __name__ == "__main__":
    main(sys.argv)
