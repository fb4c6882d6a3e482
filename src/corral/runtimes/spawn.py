"""Starting a job's first process without stalling the worker's event loop.

Starting a process is synchronous: the parent waits in vfork() until the child has exec'd, and on a
busy machine the child may wait for a CPU first, so `asyncio.create_subprocess_exec` kept the worker's
loop (every other job's start, end and report) stalled for milliseconds per job. A start that waits
for something (a sandbox's gate, a network namespace to enter) runs in a small pool of spawner threads
(the wait releases the GIL); a plain start (the host runtime's) runs on the loop's thread, where a
vfork and an exec cost less than the hand-off to a thread. The loop learns of the exit through a pidfd,
as any other readable fd. Same process as before: `subprocess.Popen` with close_fds (only
stdout/stderr and `pass_fds` are inherited), its own session, stdin from /dev/null.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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

from corral.runtimes.cgroups import ThreadEntry, join_cgroups, write_file
from corral.runtimes.childwatch import pidfd_usable
from corral.runtimes.libc import enter_netns

log = logging.getLogger(__name__)

# Persistent threads: bwrap's --die-with-parent (PR_SET_PDEATHSIG) follows the thread that started it.
SPAWNER_THREADS = 8  # starts of concurrent jobs (each waits for its sandbox's gate) do not queue
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
    _kill(started.result())


def _kill(popen: subprocess.Popen[bytes]) -> None:
    """Kill a started process's session and reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(popen.pid, signal.SIGKILL)
    with contextlib.suppress(ChildProcessError, subprocess.TimeoutExpired):
        popen.wait(5)


_HOME_NET = os.stat("/proc/self/ns/net").st_ino if os.path.exists("/proc/self/ns/net") else 0


def _thread_net() -> int:
    return os.stat("/proc/thread-self/ns/net").st_ino


def _setns(fd: int) -> None:
    enter_netns(fd)


class _InNetns:
    """This spawner thread in a job's network namespace while it starts the job, then back home.
    Fail-closed: every start first checks that its thread is in the worker's own namespace."""

    def __init__(self, netns: Path) -> None:
        self.netns = netns
        self.home = -1

    def __enter__(self) -> None:
        self.home = os.open("/proc/thread-self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        target = os.open(self.netns, os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target)
        except OSError:
            os.close(self.home)
            raise
        finally:
            os.close(target)

    def __exit__(self, *exc: object) -> None:
        try:
            _setns(self.home)  # checked again by the next start of this thread, whatever happens here
        finally:
            os.close(self.home)


def _start(
    argv: list[str], env: dict[str, str], stdout: int, cwd: Path | None, pass_fds: tuple[int, ...],
    netns: Path | None = None, cgroups: ThreadEntry | None = None,
) -> subprocess.Popen[bytes]:
    if _HOME_NET and _thread_net() != _HOME_NET:
        raise OSError("a spawner thread is not in the worker's network namespace: refusing to start a job")
    _come_home()
    if netns is not None:
        with _InNetns(netns):
            return _popen_in(cgroups, argv, env, stdout, cwd, pass_fds)
    return _popen_in(cgroups, argv, env, stdout, cwd, pass_fds)


_astray = threading.local()  # `home`: set while a spawner thread has failed to leave a job's cgroups


# Written to a v1 `tasks` file, "0" moves the thread that writes it. The kernel then skips the global
# threadgroup lock that moving any other task takes, whose writer waits a whole RCU grace period when no
# task has moved for a while: 6-14 ms on our test machines, paid by every job started after a pause
# (bench: W4's root, every W5 job), against ~0.2 ms when the thread moves itself.
CURRENT_THREAD = b"0"


def _join(files: tuple[str, ...]) -> None:
    """This thread into each cgroup (a `tasks` file of each hierarchy)."""
    for path in files:
        write_file(path, CURRENT_THREAD)


def _leave(home: tuple[str, ...]) -> None:
    """This thread back into the worker's own cgroups (remembered if that fails, see _come_home)."""
    _astray.home = home
    _join(home)
    _astray.home = None


def _come_home() -> None:
    """Fail-closed: a spawner thread still in a job's cgroups leaves them before it starts anything."""
    home: tuple[str, ...] | None = getattr(_astray, "home", None)
    if home is None:
        return
    try:
        _leave(home)
    except OSError as exc:
        raise OSError(f"a spawner thread cannot leave a job's cgroups ({exc}): not starting a job") from exc


def _popen_in(
    cgroups: ThreadEntry | None, argv: list[str], env: dict[str, str], stdout: int, cwd: Path | None,
    pass_fds: tuple[int, ...],
) -> subprocess.Popen[bytes]:
    """Start the process; with `cgroups`, this thread joins the job's cgroups first (the process is
    born in them: no shell to join them, no window outside them) and leaves once it has exec'd."""
    if cgroups is None:
        return _popen(argv, env, stdout, cwd, pass_fds)
    try:
        _join(cgroups.enter)
    except OSError as exc:
        _leave(cgroups.home)
        raise OSError(f"cannot join the job's cgroups: {exc}") from exc
    try:
        popen = _popen(argv, env, stdout, cwd, pass_fds)
    except BaseException:
        _leave(cgroups.home)
        raise
    try:
        _leave(cgroups.home)
    except OSError:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()
        raise
    return popen


def _popen(
    argv: list[str], env: dict[str, str], stdout: int, cwd: Path | None, pass_fds: tuple[int, ...]
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=stdout, stderr=subprocess.STDOUT,
        start_new_session=True, pass_fds=pass_fds, close_fds=True,
    )


class SandboxGate:
    """Holds a bubblewrap sandbox before the job's first process exists, until the worker has put the
    sandbox's processes into the job's cgroups (instead of a shell that joins them and execs bwrap). For
    layouts where a thread cannot join the cgroups alone to start bwrap in them (cgroup v2).

    bwrap `--info-fd` writes the sandbox's first process (pid 1 inside) as soon as it is cloned;
    `--block-fd` makes that process wait, after setting up the sandbox and before it forks the job's
    first process, until it reads a byte. The worker writes the outer bwrap and that pid into every
    procs file, then the byte: everything the job runs is forked after that, inside the cgroups. The
    block fd is the pipe reopened read-write, so the sandbox holds a writer itself: the read never ends
    at end-of-file (a worker dying before the byte leaves the sandbox waiting, never running the job).
    """

    def __init__(self, procs_files: Sequence[Path]) -> None:
        self.procs_files = list(procs_files)
        self.info_r, self.info_w = os.pipe()
        read_end, self.go_w = os.pipe()
        try:
            self.block = os.open(f"/proc/self/fd/{read_end}", os.O_RDWR | os.O_CLOEXEC)
        finally:
            os.close(read_end)

    def args(self) -> list[str]:
        return ["--info-fd", str(self.info_w), "--block-fd", str(self.block)]

    @property
    def fds(self) -> tuple[int, ...]:
        return (self.info_w, self.block)

    def sandbox_pid(self) -> int | None:
        """Once bwrap runs: the sandbox's first process (its info), None if bwrap ended without one."""
        os.close(self.info_w)
        os.close(self.block)
        self.info_w = self.block = -1
        info = b""
        while chunk := os.read(self.info_r, 65536):
            info += chunk
        try:
            return int(json.loads(info)["child-pid"])
        except (ValueError, KeyError, TypeError):
            return None

    def open_after_start(self, popen: subprocess.Popen[bytes]) -> None:
        """In the spawner thread, once bwrap runs: join its processes to the cgroups, then let it go."""
        sandbox_pid = self.sandbox_pid()
        if sandbox_pid is None:
            # bwrap exited before creating the sandbox (its error is in the job's log): nothing of the
            # job ran; its session holds any straggler, kill it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGKILL)
            return
        try:
            join_cgroups(self.procs_files, [popen.pid, sandbox_pid])
        except OSError as exc:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGKILL)  # the sandbox's first process is still in it too
            popen.wait()
            raise OSError(f"cannot join the job's cgroups: {exc}") from exc
        os.write(self.go_w, b"g")

    def close(self) -> None:
        for fd in (self.info_r, self.info_w, self.go_w, self.block):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.info_r = self.info_w = self.go_w = self.block = -1


def _start_gated(
    argv: list[str], env: dict[str, str], stdout: int, cwd: Path | None, pass_fds: tuple[int, ...],
    gate: SandboxGate, netns: Path | None,
) -> subprocess.Popen[bytes]:
    popen = _start(argv, env, stdout, cwd, pass_fds + gate.fds, netns)
    gate.open_after_start(popen)
    return popen


async def spawn(
    argv: Sequence[str], *, env: Mapping[str, str], stdout: int, cwd: Path | None = None,
    pass_fds: Sequence[int] = (), gate: SandboxGate | None = None, netns: Path | None = None,
    cgroups: ThreadEntry | None = None,
) -> JobProcess:
    """Start `argv` in a new session (stdout and stderr to `stdout`); OSError if it cannot start.
    With `cgroups`, the process is born in the job's cgroups; with a `gate` (its args in `argv`), the
    sandbox runs the job only once it is in them; with `netns` (a network namespace file), the process
    starts in that namespace."""
    loop = asyncio.get_running_loop()
    if not pidfd_usable() and gate is None and netns is None and cgroups is None:
        return await asyncio.create_subprocess_exec(
            *argv, env=env, cwd=cwd, stdin=asyncio.subprocess.DEVNULL, stdout=stdout,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True, pass_fds=pass_fds,
        )
    if gate is None and netns is None:
        # Nothing to wait for and no namespace to enter: started on the loop's own thread (a vfork and an
        # exec; with `cgroups`, the loop's thread is in the job's cgroups only for that call). Handing it
        # to a spawner thread cost the worker more CPU than the start itself (queue, GIL hand-overs,
        # wake-ups): bench.cpu_per_job with the host runtime, worker 2.3 -> 1.6 ms a job.
        popen = _start(list(argv), dict(env), stdout, cwd, tuple(pass_fds), None, cgroups)
        return _watched(popen, loop)
    if gate is None:
        job = partial(_start, list(argv), dict(env), stdout, cwd, tuple(pass_fds), netns, cgroups)
    else:
        job = partial(_start_gated, list(argv), dict(env), stdout, cwd, tuple(pass_fds), gate, netns)
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
    return _watched(popen, loop)


def _watched(popen: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop) -> JobProcess:
    """The started process, awaited through a pidfd in the loop (a thread's waitpid without one)."""
    if not pidfd_usable():
        return _WaitedInThread(popen, loop)
    try:
        return PidfdProcess(popen, loop)
    except OSError:
        _kill(popen)
        raise


class _WaitedInThread:
    """Without pidfds (Linux < 5.3): the exit is awaited by a thread of the default executor."""

    def __init__(self, popen: subprocess.Popen[bytes], loop: asyncio.AbstractEventLoop) -> None:
        self._popen = popen
        self._exited = loop.run_in_executor(None, popen.wait)

    @property
    def pid(self) -> int:
        return self._popen.pid

    @property
    def returncode(self) -> int | None:
        return self._popen.returncode if self._exited.done() else None

    async def wait(self) -> int:
        return await asyncio.shield(self._exited)


__all__ = ["JobProcess", "PidfdProcess", "SandboxGate", "spawn"]
