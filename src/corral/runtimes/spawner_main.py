"""The job spawner: a small process of the worker's own that starts jobs' first processes and reaps them.

Run by the worker (`spawner.py`) with one end of a private socketpair; the standard library only (no
Corral import: it starts in a few tens of ms). It exists so that the worker's event loop never waits for
a start: a vfork parent waits until its child has exec'd, which on busy cores is most of a short job's
cost to the worker. Here that wait, the cgroup join and leave around it and every reap run on the other
core.

Messages are pickles over SOCK_SEQPACKET (one request a message; replies gathered into lists):
  worker  -> spawner  ("spawn", seq, argv, env, cwd, enter, home), the job's output fd attached
  spawner -> worker   [("started", seq, pid) | ("failed", seq, errno, text) | ("exited", pid, code), ...]
`enter`: cgroup v1 `tasks` files this process joins while it starts the job (the job is born in them);
`home`: the ones it goes back to (the worker's). A job runs in its own session, stdin from /dev/null,
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
from typing import Any

PR_SET_PDEATHSIG = 1
MAX_MESSAGE = 1 << 20
CURRENT_THREAD = b"0"  # written to a v1 `tasks` file: moves the writer alone (see spawn.py)


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


def start(argv: list[str], env: dict[str, str], cwd: str | None, out: int,
          enter: list[str], home: list[str]) -> subprocess.Popen[bytes]:
    """The job's first process, born in the `enter` cgroups; this process back `home` before returning."""
    try:
        for path in enter:
            _write(path, CURRENT_THREAD)
        return _spawn(argv, env, cwd, out)
    finally:
        if enter:
            try:
                for path in home:
                    _write(path, CURRENT_THREAD)
            except OSError as exc:
                raise LeaveFailed(exc.errno, f"cannot leave a job's cgroups: {exc.strerror}") from exc


class Spawner:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.replies: list[tuple[Any, ...]] = []
        # Kept until reaped here: a Popen dropped while its process runs would be reaped by subprocess
        self.children: dict[int, subprocess.Popen[bytes]] = {}

    def requests(self) -> bool:
        """Every request waiting on the socket; False once the worker has closed it."""
        while True:
            try:
                data, ancdata, _, _ = self.sock.recvmsg(
                    MAX_MESSAGE, socket.CMSG_SPACE(4 * 4), socket.MSG_DONTWAIT | socket.MSG_CMSG_CLOEXEC
                )
            except BlockingIOError:
                return True
            if not data:
                return False
            fds = array.array("i")
            for level, kind, payload in ancdata:
                if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
                    fds.frombytes(payload[: len(payload) - len(payload) % fds.itemsize])
            try:
                self.handle(pickle.loads(data), list(fds))
            finally:
                for fd in fds:
                    os.close(fd)

    def handle(self, request: tuple[Any, ...], fds: list[int]) -> None:
        _, seq, argv, env, cwd, enter, home = request
        try:
            if not fds:
                raise OSError(9, "no output fd with the request")
            popen = start(argv, env, cwd, fds[0], enter, home)
        except LeaveFailed as exc:
            self.replies.append(("failed", seq, exc.errno or 0, str(exc)))
            self.flush()
            sys.exit(3)  # fail-closed: never start another job from inside a job's cgroups
        except OSError as exc:
            self.replies.append(("failed", seq, exc.errno or 0, str(exc)))
        except (ValueError, TypeError) as exc:  # what Popen refuses (e.g. a NUL in an argument): this
            self.replies.append(("failed", seq, 0, f"{exc}"))  # job fails to start, the others run on
        else:
            self.children[popen.pid] = popen
            self.replies.append(("started", seq, popen.pid))

    def reap(self) -> None:
        while self.children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.children.clear()
                return
            if pid == 0:
                return
            code = os.waitstatus_to_exitcode(status)
            popen = self.children.pop(pid, None)
            if popen is not None:
                popen.returncode = code
            self.replies.append(("exited", pid, code))

    def flush(self) -> None:
        if self.replies:
            data = pickle.dumps(self.replies, pickle.HIGHEST_PROTOCOL)
            self.replies = []
            self.sock.sendall(data)


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
                return
        spawner.reap()
        try:
            spawner.flush()
        except OSError:
            return  # the worker is gone


if __name__ == "__main__":
    main(sys.argv)
