"""Finding or starting the embedded server for one CORRAL_HOME (used by LocalBackend)."""

from __future__ import annotations

import fcntl
import os
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
def _start_lock(home: Path) -> Iterator[None]:
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
    with _start_lock(home):
        url = running_url(home)
        if url is not None:
            return url, None
        return _start(home, workers=workers, cores=cores, timeout=timeout)


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
