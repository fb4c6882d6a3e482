"""Finding or starting the embedded server for one CORRAL_HOME (used by LocalBackend)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from corral.client.discovery import read_url_file, url_file
from corral.errors import CorralError

START_TIMEOUT = 30.0


class ServerStartFailed(CorralError):
    """The embedded server did not come up; the message has the tail of its log."""


def healthy(url: str, timeout: float = 2.0) -> bool:
    try:
        return httpx.get(f"{url}/healthcheck", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def running_url(home: Path) -> str | None:
    """The URL of a live server for `home`, if its url file answers /healthcheck."""
    url = read_url_file(url_file(home))
    return url if url and healthy(url) else None


def log_tail(path: Path, n: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


@contextmanager
def start_lock(home: Path) -> Iterator[None]:
    """Two clients starting at once must not start two servers on one store."""
    home.mkdir(parents=True, exist_ok=True)
    with open(home / "server.start.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class LocalServer:
    """A `corral server --port 0` subprocess owned by this client."""

    def __init__(self, proc: subprocess.Popen[bytes], url: str, log: Path) -> None:
        self.proc = proc
        self.url = url
        self.log = log

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def ensure_server(
    home: Path, *, workers: int = 1, cores: float | None = None, timeout: float = START_TIMEOUT
) -> tuple[str, LocalServer | None]:
    """(url, server we started or None when one was already running for `home`)."""
    with start_lock(home):
        return ensure_server_locked(home, workers=workers, cores=cores, timeout=timeout)


def ensure_server_locked(
    home: Path, *, workers: int = 1, cores: float | None = None, timeout: float = START_TIMEOUT
) -> tuple[str, LocalServer | None]:
    """ensure_server, for a caller that holds start_lock(home)."""
    url = running_url(home)
    if url is not None:
        return url, None
    if server_lock_held(home):  # a server of this home is starting (or busy): wait for it, never a second
        return _wait_for_running(home, timeout), None
    return _start(home, workers=workers, cores=cores, timeout=timeout)


def server_lock_held(home: Path) -> bool:
    """True while a `corral server` process holds HOME/server.lock (see corral.home.hold_server_lock)."""
    try:
        with open(home / "server.lock", "a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return True
            fcntl.flock(lock, fcntl.LOCK_UN)
            return False
    except OSError:
        return False


def _wait_for_running(home: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        url = running_url(home)
        if url is not None:
            return url
        if not server_lock_held(home):
            break
        time.sleep(0.1)
    raise ServerStartFailed(
        f"a Corral server holds {home} but does not answer; its log: {home / 'logs' / 'server.log'}"
    )


# ---- sharing one embedded server between several LocalBackends (notebooks, scripts) of one home


class Lease:
    """A LocalBackend attached to the home's server: a locked file under HOME/clients that the OS
    releases if the process dies, so the last one to leave knows it may stop the server."""

    def __init__(self, home: Path) -> None:
        folder = home / "clients"
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{os.getpid()}-{secrets.token_hex(4)}"
        self._file = open(self.path, "w")  # noqa: SIM115 - held until release()
        fcntl.flock(self._file, fcntl.LOCK_EX)

    def release(self) -> None:
        if self._file.closed:
            return
        self.path.unlink(missing_ok=True)
        fcntl.flock(self._file, fcntl.LOCK_UN)
        self._file.close()


def other_clients_alive(home: Path) -> bool:
    """Whether another live process holds a lease on the home's server (stale leases are removed)."""
    alive = False
    for path in (home / "clients").glob("*"):
        try:
            with open(path) as held:
                try:
                    fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    alive = True
                    continue
                path.unlink(missing_ok=True)  # its process ended without releasing it
                fcntl.flock(held, fcntl.LOCK_UN)
        except OSError:
            continue
    return alive


OWNER_FILE = "server.owner"  # the pid of a server a LocalBackend started (and the last one stops)


def stop_embedded_server(home: Path, timeout: float = 30.0) -> None:
    """Stop the home's server if a LocalBackend started it (never one started by `corral server`)."""
    owner = home / OWNER_FILE
    try:
        pid = int(json.loads(owner.read_text())["pid"])
        running_pid = int(json.loads(url_file(home).read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        owner.unlink(missing_ok=True)
        return
    # Only a live server of this home (it holds the home's lock): a recorded pid whose server has exited
    # may belong to another process by now (pids are reused), which must never get the signal.
    if pid == running_pid and server_lock_held(home):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while server_lock_held(home) and time.monotonic() < deadline:
            time.sleep(0.05)
    owner.unlink(missing_ok=True)


def _start(home: Path, *, workers: int, cores: float | None, timeout: float) -> tuple[str, LocalServer]:
    path = url_file(home)
    path.unlink(missing_ok=True)  # stale: its server did not answer
    log_dir = home / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    log = log_dir / "server.log"
    env = {**os.environ, "CORRAL_HOME": str(home), "CORRAL_LOCAL_WORKERS": str(workers)}
    if cores is not None:
        env["CORRAL_LOCAL_WORKER_CORES"] = str(cores)
    for name in ("CORRAL_PORT", "CORRAL_URL_FILE", "CORRAL_DATABASE_URL"):
        env.pop(name, None)  # this server belongs to `home`, whatever the caller's shell says
    command = [sys.executable, "-m", "corral", "server", "--port", "0", "--url-file", str(path)]
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            command,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # Ctrl-C in the client reaches us first; we stop it in order
        )
    (home / OWNER_FILE).write_text(json.dumps({"pid": proc.pid}))
    server = LocalServer(proc, "", log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerStartFailed(
                f"the Corral server for {home} exited with code {proc.returncode} while starting; "
                f"its log ({log}) ends with:\n{log_tail(log)}"
            )
        url = read_url_file(path)
        if url and healthy(url):
            server.url = url
            return url, server
        time.sleep(0.05)
    server.stop(timeout=5)
    raise ServerStartFailed(
        f"the Corral server for {home} did not start within {timeout:.0f}s; its log ({log}) ends with:\n"
        f"{log_tail(log)}"
    )
