"""stop_embedded_server signals a home's server only while it runs (holds the home's lock): the pid a
LocalBackend recorded may belong to another process once that server has exited. Real processes; the
host is checked afterwards (the other process still runs)."""

from __future__ import annotations

import fcntl
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from corral.client.discovery import url_file
from corral.client.local_server import OWNER_FILE, stop_embedded_server


@pytest.fixture
def bystander() -> Iterator[subprocess.Popen[bytes]]:
    """A process that got the pid of a server that has exited (as pids are reused)."""
    proc = subprocess.Popen(["sleep", "60"])
    yield proc
    proc.kill()
    proc.wait()


def _records(home: Path, pid: int) -> None:
    (home / OWNER_FILE).write_text(json.dumps({"pid": pid}))
    url_file(home).write_text(json.dumps({"url": "http://127.0.0.1:1", "pid": pid}))


def test_a_stale_record_never_signals_the_process_that_has_its_pid_now(
    tmp_path: Path, bystander: subprocess.Popen[bytes]
) -> None:
    _records(tmp_path, bystander.pid)  # the server is gone: nobody holds the home's lock
    stop_embedded_server(tmp_path, timeout=1)
    with pytest.raises(subprocess.TimeoutExpired):  # still running half a second later: not signalled
        bystander.wait(0.5)
    assert not (tmp_path / OWNER_FILE).exists()  # the stale record is cleared


def test_the_homes_running_server_is_signalled(tmp_path: Path) -> None:
    # A stand-in server: holds the home's lock (as `corral server` does) until it is signalled.
    script = (
        "import fcntl, signal, sys, time\n"
        "lock = open(sys.argv[1], 'a+')\n"
        "fcntl.flock(lock, fcntl.LOCK_EX)\n"
        "print('locked', flush=True)\n"
        "time.sleep(60)\n"
    )
    lock = str(tmp_path / "server.lock")
    server = subprocess.Popen(["python3", "-c", script, lock], stdout=subprocess.PIPE)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == b"locked"
        _records(tmp_path, server.pid)
        stop_embedded_server(tmp_path, timeout=10)
        assert server.wait(10) == -15  # SIGTERM
    finally:
        server.kill()
        server.wait()
    with open(tmp_path / "server.lock", "a+") as lock:  # and its lock is free again
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
