"""Host-wide: what any dead Corral worker left on this host, removed by a starting root worker.

`worker/cleanup.py` cleans a dead worker when the next one starts in the same parent directory. A
worker whose work dir is never reused (a temporary home, a server moved elsewhere) would leak its
mounted volumes and network namespaces until reboot, so a starting root worker also looks host-wide:

1. `/run/corral-workers/*.json`: every root worker records its work dir there (owner record, see
   runtimes/owners.py). A provably dead one's cgroups (killing what still runs), namespaces and mounts
   under its work dir are removed, then its record. Its directory is kept (its parent's next worker,
   or its owner, removes it).
2. `/run/corral-net/<name>`: the owner of each private network namespace; a dead owner's is deleted.
3. `/proc/self/mountinfo`: mounts inside a directory holding a `worker.lock` that nobody holds (work
   dirs of workers from before the records existed) are unmounted.

4. `/run/netns/corral-*` without an owner record (made before records existed): deleted only when
   older than 15 minutes, no slirp4netns serves it (a live worker's pooled network always has one)
   and no process or thread is inside it (checked from the host's pid namespace only).

Nothing whose owner holds its lock or whose pid lives is touched, nor a mount in a directory without
a worker's lock: on a shared host those may be other live workers'. The scan is bounded in time
(`budget`); what is left over is found by the next worker to start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from corral.runtimes.network import NETNS_DIR, delete_namespace
from corral.runtimes.owners import (
    LOCK,
    NETNS_OWNERS_DIR,
    Owner,
    claim_if_dead,
    read_record,
    release,
    worker_record_paths,
)
from corral.worker.cleanup import clean_dead_work_dir

log = logging.getLogger(__name__)
SKIPPED_MOUNT_ROOTS = ("/proc/", "/sys/", "/dev/", f"{NETNS_DIR}/")
MAX_LOCK_DEPTH = 8  # how far above a mount point a work dir's lock is looked for
ORPHAN_AGE = 15 * 60.0  # an unrecorded namespace this old, unused and unserved, is nobody's
INIT_PID_NAMESPACE = 0xEFFFFFFC  # the kernel's PROC_PID_INIT_INO: every process on the host is visible


@dataclass
class Reaped:
    workers: list[str] = field(default_factory=list)  # work dirs of dead workers cleaned
    namespaces: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    out_of_time: bool = False


def _mount_points() -> list[str]:
    points = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if not point.startswith(SKIPPED_MOUNT_ROOTS):
                points.append(point)
    return points


class _Reaper:
    def __init__(self, own_work_dir: Path, budget: float, orphan_age: float) -> None:
        self.own_lock = str(own_work_dir / LOCK)
        self.orphan_age = orphan_age
        self.deadline = time.monotonic() + budget
        self.reaped = Reaped()
        # An owner (lock path, pid, pid start) -> provably dead (and cleaned). Records naming the same lock
        # may differ in pid (a work dir reused by a later worker): each owner is judged on its own.
        self.verdicts: dict[tuple[str, object, object], bool] = {}

    def out_of_time(self) -> bool:
        if time.monotonic() > self.deadline:
            self.reaped.out_of_time = True
        return self.reaped.out_of_time

    def run(self) -> Reaped:
        self._registered_workers()
        self._namespaces()
        self._unregistered_mounts()
        self._orphan_namespaces()
        return self.reaped

    def _with_dead_owner(self, record: Owner) -> int | None:
        if record["lock"] == self.own_lock or self.verdicts.get(_key(record)) is False:
            return None
        fd = claim_if_dead(record)
        if fd is None:
            self.verdicts[_key(record)] = False
        return fd

    def _registered_workers(self) -> None:
        for path in worker_record_paths():
            if self.out_of_time():
                return
            record = read_record(path)
            if record is None or not isinstance(record.get("work_dir"), str):
                continue
            fd = self._with_dead_owner(record)
            if fd is None:
                continue
            try:
                work_dir = Path(record["work_dir"])
                self.reaped.mounts += [str(p) for p in clean_dead_work_dir(work_dir)]
                self._owned_namespaces(record["lock"])
                path.unlink(missing_ok=True)
                self.verdicts[_key(record)] = True
                self.reaped.workers.append(str(work_dir))
            finally:
                release(fd)

    def _owned_namespaces(self, lock: str) -> None:
        """Namespaces whose owner record names this (dead) worker's lock."""
        for owner_file in self._namespace_owner_files():
            record = read_record(owner_file)
            if record is not None and record["lock"] == lock:
                self._delete_recorded_namespace(owner_file)

    def _namespace_owner_files(self) -> list[Path]:
        if not NETNS_OWNERS_DIR.is_dir():
            return []
        return [p for p in NETNS_OWNERS_DIR.iterdir() if p.name.startswith("corral-")]

    def _delete_recorded_namespace(self, owner_file: Path) -> None:
        if (NETNS_DIR / owner_file.name).exists():
            if not delete_namespace(owner_file.name):
                return
            self.reaped.namespaces.append(owner_file.name)
        owner_file.unlink(missing_ok=True)

    def _namespaces(self) -> None:
        for owner_file in self._namespace_owner_files():
            if self.out_of_time():
                return
            record = read_record(owner_file)
            if record is None:
                continue
            fd = self._with_dead_owner(record)
            if fd is None:
                continue
            try:
                self._delete_recorded_namespace(owner_file)
            finally:
                release(fd)

    def _unregistered_mounts(self) -> None:
        """Mounts inside work dirs of dead workers that left no record (older code)."""
        seen: dict[Path, Path | None] = {}  # a directory -> the work dir (holding a lock) it is in
        work_dirs: set[Path] = set()
        for point in _mount_points():
            directory = Path(point).parent
            chain: list[Path] = []
            found: Path | None = None
            for _depth in range(MAX_LOCK_DEPTH):
                if directory in seen:
                    found = seen[directory]
                    break
                chain.append(directory)
                if (directory / LOCK).is_file():
                    found = directory
                    break
                if directory.parent == directory:
                    break
                directory = directory.parent
            for d in chain:
                seen[d] = found
            if found is not None:
                work_dirs.add(found)
        for work_dir in sorted(work_dirs):
            lock = str(work_dir / LOCK)
            if self.out_of_time():
                return
            if any(key[0] == lock for key in self.verdicts):
                continue  # judged by its record: cleaned, or maybe alive
            fd = self._with_dead_owner({"lock": lock})  # no pid known: only a free lock is proof
            if fd is None or fd < 0:
                continue
            try:
                self.reaped.mounts += [str(p) for p in clean_dead_work_dir(work_dir)]
                self.verdicts[_key({"lock": lock})] = True
            finally:
                release(fd)

    def _orphan_namespaces(self) -> None:
        """Unrecorded /run/netns/corral-* (made before owner records) that nothing can be using: older than
        `orphan_age` seconds, no slirp4netns serving it (a live worker's pooled network always has one) and no
        process inside it. Processes are all visible only from the host's pid namespace: elsewhere, skip."""
        if _pid_namespace_inode() != INIT_PID_NAMESPACE:
            return
        owned = {p.name for p in self._namespace_owner_files()}
        now = time.time()
        candidates: dict[int, str] = {}  # namespace inode -> name
        for entry in os.scandir(NETNS_DIR) if NETNS_DIR.is_dir() else []:
            if not entry.name.startswith("corral-") or entry.name in owned:
                continue
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                if now - st.st_mtime > self.orphan_age:
                    candidates[st.st_ino] = entry.name
        if not candidates or self.out_of_time():
            return
        for used in _namespaces_in_use():
            if isinstance(used, int):
                candidates.pop(used, None)
            else:
                candidates = {ino: name for ino, name in candidates.items() if name != used}
        for name in sorted(candidates.values()):
            if self.out_of_time():
                return
            if delete_namespace(name):
                self.reaped.namespaces.append(name)


def _key(record: Owner) -> tuple[str, object, object]:
    return (record["lock"], record.get("pid"), record.get("start"))


def _pid_namespace_inode() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def _namespaces_in_use() -> list[int | str]:
    """Network namespace inodes some process (or thread) is in, and /run/netns names a slirp4netns serves."""
    used: list[int | str] = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            used.append(os.stat(f"/proc/{entry.name}/ns/net").st_ino)
            for task in os.scandir(f"/proc/{entry.name}/task"):
                if task.name != entry.name:
                    with contextlib.suppress(OSError):
                        used.append(os.stat(f"/proc/{entry.name}/task/{task.name}/ns/net").st_ino)
            if Path(f"/proc/{entry.name}/comm").read_text().strip() == "slirp4netns":
                for arg in Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0"):
                    if arg.startswith(str(NETNS_DIR).encode() + b"/corral-"):
                        used.append(arg.decode(errors="replace").rsplit("/", 1)[1])
    return used


def reap_dead_workers(own_work_dir: Path, budget: float = 5.0, orphan_age: float = ORPHAN_AGE) -> Reaped:
    """Remove what provably dead Corral workers left anywhere on this host (root only); bounded by `budget`
    seconds. Never raises: a failure is logged and the rest goes on at the next worker's start."""
    if os.geteuid() != 0:
        return Reaped()
    try:
        reaped = _Reaper(own_work_dir, budget, orphan_age).run()
    except Exception:
        log.exception("host-wide cleanup of dead workers failed")
        return Reaped()
    if reaped.workers or reaped.namespaces or reaped.mounts:
        log.warning("removed what dead workers left on this host: %d work dirs, %d network namespaces, "
                    "%d mounts", len(reaped.workers), len(reaped.namespaces), len(reaped.mounts))
    if reaped.out_of_time:
        log.warning("host-wide cleanup of dead workers stopped after %.1f s; the next worker goes on", budget)
    return reaped
