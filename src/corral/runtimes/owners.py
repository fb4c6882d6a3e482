"""Who owns what a root worker leaves on its host, and whether that owner is provably dead.

A worker holds an exclusive flock on `<work_dir>/worker.lock` for its whole life. Things it makes
outside its work dir (a private network's namespace under /run/netns) and the work dir itself are
recorded under /run with an *owner record*: the lock's path, the worker's pid, that pid's start time
and pid namespace. A starting worker may then remove another worker's leftovers only when

* the owner's lock can be taken (nobody holds it), and its pid is not alive with the same start time; or
* the lock file is gone (its work dir was deleted) and, in our pid namespace, its pid is gone too.

Anything else (the lock held, the pid alive, a record from another pid namespace without a lock to
try, an unreadable record) counts as alive: it is left alone.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import json
import os
from pathlib import Path
from typing import Any

LOCK = "worker.lock"
WORKERS_DIR = Path("/run/corral-workers")  # one record per live root worker: <digest of work dir>.json
NETNS_OWNERS_DIR = Path("/run/corral-net")  # one per private network namespace: /run/netns/<same name>

Owner = dict[str, Any]


def _start_time(pid: int) -> int | None:
    """The pid's start time (clock ticks since boot; /proc/<pid>/stat field 22), None if no such pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    try:
        return int(stat.rsplit(")", 1)[1].split()[19])
    except (IndexError, ValueError):
        return None


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def owner(work_dir: Path) -> Owner:
    """This process's owner record for things a worker with this work dir makes."""
    pid = os.getpid()
    return {"lock": str(work_dir / LOCK), "work_dir": str(work_dir), "pid": pid,
            "start": _start_time(pid), "pidns": _pid_namespace()}


def write_record(path: Path, record: Owner) -> None:
    """Write an owner record (atomically: a reader never sees half of one)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text(json.dumps(record))
    os.replace(tmp, path)


def read_record(path: Path) -> Owner | None:
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("lock"), str):
        return None
    return record


def worker_record_paths() -> list[Path]:
    """The records of root workers on this host (live or dead), in a stable order."""
    return sorted(WORKERS_DIR.glob("*.json")) if WORKERS_DIR.is_dir() else []


def worker_record_path(work_dir: Path) -> Path:
    digest = hashlib.sha256(str(work_dir).encode()).hexdigest()[:20]
    return WORKERS_DIR / f"{digest}.json"


def _pid_state(record: Owner) -> bool | None:
    """True: the owner's process lives; False: provably gone; None: cannot tell (another pid namespace)."""
    pid, start = record.get("pid"), record.get("start")
    if not isinstance(pid, int) or record.get("pidns") != _pid_namespace():
        return None
    now = _start_time(pid)
    if now is None:
        return False
    return start is None or now == start  # no recorded start time: a live pid is taken as the owner


def claim_if_dead(record: Owner) -> int | None:
    """None if the owner may be alive; else an fd holding its lock (-1: no lock file) until closed.

    Holding the dead owner's lock while its leftovers are removed keeps a new worker from starting in
    that work dir meanwhile.
    """
    pid_state = _pid_state(record)
    if pid_state is True:
        return None
    try:
        fd = os.open(record["lock"], os.O_RDWR | os.O_CLOEXEC | os.O_NOFOLLOW)
    except OSError as exc:
        return -1 if exc.errno == errno.ENOENT and pid_state is False else None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None  # held: alive
    return fd


def release(fd: int) -> None:
    if fd >= 0:
        with contextlib.suppress(OSError):
            os.close(fd)
