"""Where a Corral installation keeps its state on this machine (light: the CLI imports it at start)."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path
from typing import IO

from corral.errors import CorralError


def default_home() -> Path:
    """$CORRAL_HOME, else ~/.corral."""
    return Path(os.environ.get("CORRAL_HOME", Path.home() / ".corral"))


class ServerAlreadyRunning(CorralError):
    """Another `corral server` holds this home; two would share and break its workers and files."""

    status_code = 409


def hold_server_lock(home: Path) -> IO[str]:
    """Take HOME/server.lock for the life of this process (the OS drops it when the process ends, even
    on SIGKILL); ServerAlreadyRunning, naming the running server, when another process holds it."""
    home.mkdir(parents=True, exist_ok=True)
    lock = open(home / "server.lock", "a+")  # noqa: SIM115 - held until release_server_lock
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.seek(0)
        holder = lock.read().strip() or "unknown"
        lock.close()
        url = _running_url(home)
        at = f" at {url}" if url else ""
        raise ServerAlreadyRunning(
            f"a Corral server already runs for {home}{at} (pid {holder}): use it (`corral` commands and "
            "LocalBackend find it), stop it first, or give this one another --home / CORRAL_HOME"
        ) from None
    lock.seek(0)
    lock.truncate()
    lock.write(str(os.getpid()))
    lock.flush()
    return lock


def release_server_lock(lock: IO[str]) -> None:
    with contextlib.suppress(OSError):
        fcntl.flock(lock, fcntl.LOCK_UN)
    lock.close()


def _running_url(home: Path) -> str | None:
    try:
        data = json.loads((home / "server.url").read_text())
    except (OSError, ValueError):
        return None
    url = data.get("url") if isinstance(data, dict) else None
    return url if isinstance(url, str) else None
