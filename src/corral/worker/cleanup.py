"""What a worker that died (SIGKILL, OOM, power) left on its host, removed by the next worker to start.

Every worker holds an exclusive lock on `<work_dir>/worker.lock` while it lives and records the cgroups
it creates jobs under in `<work_dir>/cgroups`. A starting worker looks at its siblings (the other work
dirs under the same parent, whatever instance name made them): a lock it can take means its owner is
gone, so it kills what still runs in that worker's cgroups, removes them, unmounts what is mounted in
the dead worker's directory and deletes it. A directory without a lock file (not made by a worker
that keeps one) is left alone.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

from corral.runtimes.cgroups import RECORD as CGROUPS
from corral.runtimes.network import NETNS_RECORD
from corral.runtimes.owners import LOCK, NETNS_OWNERS_DIR, owner, worker_record_path, write_record

log = logging.getLogger(__name__)
__all__ = [
    "LOCK", "claim", "clean_dead_siblings", "clean_dead_work_dir", "clean_previous", "forget_worker",
    "record_worker",
]


def claim(work_dir: Path, wait: float = 3.0) -> int:
    """Lock this worker's dir for its lifetime; returns the fd to keep open (closing releases it).

    BlockingIOError: another live worker has this dir. A starting worker cleaning up after a dead one
    holds that one's lock for a moment (worker/reaper.py), so a held lock is retried for `wait` seconds.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(work_dir / LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise
            time.sleep(0.1)


def record_worker(work_dir: Path) -> None:
    """Root: record this live worker host-wide (/run/corral-workers), so whatever it leaves after a crash
    is found by any worker that starts later, wherever its work dir is (worker/reaper.py)."""
    if os.geteuid() != 0:
        return
    try:
        write_record(worker_record_path(work_dir), owner(work_dir))
    except OSError as exc:
        log.warning("could not record this worker in /run/corral-workers: %s", exc)


def forget_worker(work_dir: Path) -> None:
    """At a clean exit: nothing of this worker is left to find."""
    with contextlib.suppress(OSError):
        worker_record_path(work_dir).unlink(missing_ok=True)


def _remove_cgroup_tree(top: Path) -> bool:
    """SIGKILL everything under `top`, then rmdir it bottom-up; False if something stayed."""
    if not top.is_dir():
        return True
    for _ in range(50):
        alive = False
        for root, _dirs, _files in os.walk(top):
            with contextlib.suppress(OSError, ValueError):
                for pid in Path(root, "cgroup.procs").read_text().split():
                    alive = True
                    with contextlib.suppress(ProcessLookupError, PermissionError):
                        os.kill(int(pid), signal.SIGKILL)
        for root, _dirs, _files in sorted(os.walk(top), key=lambda w: len(w[0]), reverse=True):
            with contextlib.suppress(OSError):
                os.rmdir(root)
        if not top.exists():
            return True
        if alive:
            time.sleep(0.02)
    return not top.exists()


def _mounts_under(directory: Path) -> list[Path]:
    prefix = str(directory.resolve()).rstrip("/") + "/"
    points = []
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/mountinfo").read_text().splitlines():
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix):
                points.append(Path(point))
    return sorted(points, key=lambda p: len(p.parts), reverse=True)


def clean_previous(work_dir: Path) -> None:
    """What an earlier run of this same work dir left (a worker restarted under the same name)."""
    _clean_dead(work_dir, keep_dir=True)
    (work_dir / CGROUPS).unlink(missing_ok=True)


def _clean_dead(dead: Path, *, keep_dir: bool = False) -> None:
    clean_dead_work_dir(dead)
    if not keep_dir:
        shutil.rmtree(dead, ignore_errors=True)


def clean_dead_work_dir(dead: Path) -> list[Path]:
    """A dead worker's cgroups (what runs in them killed), recorded namespaces and the mounts in its dir;
    the caller holds its lock (or proved it dead). Returns the mount points unmounted."""
    from corral.runtimes.volume import unmount

    with contextlib.suppress(OSError):
        for line in (dead / CGROUPS).read_text().splitlines():
            if line.strip() and not _remove_cgroup_tree(Path(line.strip())):
                log.warning("could not remove cgroup %s of a dead worker", line.strip())
    with contextlib.suppress(OSError):  # private networks: their slirp4netns exited with the worker
        for name in (dead / NETNS_RECORD).read_text().split():
            if name.startswith("corral-"):
                subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
                (NETNS_OWNERS_DIR / name).unlink(missing_ok=True)
        (dead / NETNS_RECORD).unlink()
    with contextlib.suppress(OSError):  # a worker that is not root may not even look into /run's records
        worker_record_path(dead).unlink(missing_ok=True)
    staged = _stage_mounts_of(dead)  # before its volumes go: they tell which stage binds are its
    unmounted = []
    for point in [*staged, *_mounts_under(dead)]:
        with contextlib.suppress(OSError):
            unmount(point)
            unmounted.append(point)
    _remove_emptied_stages(staged)
    return unmounted


def _stage_mounts_of(dead: Path) -> list[Path]:
    """Mounts under /run/corral-oci (oci jobs' user-namespace stage, named by instance, which several
    workers may share) provably of this work dir: a bind of a path in it, an overlay whose options name
    it, or a bind of a loop volume mounted in it. Innermost first."""
    from corral.runtimes.oci.userns import STAGE_ROOT

    prefix = str(dead.resolve()).rstrip("/") + "/"
    try:
        table = [line.split() for line in Path("/proc/self/mountinfo").read_text().splitlines()]
    except OSError:
        return []
    fields = [(f, f[f.index("-") + 1:]) for f in table if "-" in f]
    volumes = {f[2] for f, tail in fields if f[4].startswith(prefix) and tail[1].startswith("/dev/loop")}
    stage = str(STAGE_ROOT) + "/"
    points = []
    for f, tail in fields:
        point = f[4].replace("\\040", " ")
        if not point.startswith(stage):
            continue
        options = " ".join(tail[2:])
        if f[3].startswith(prefix) or f"dir={prefix}" in options or f[2] in volumes:
            points.append(Path(point))
    return sorted(points, key=lambda p: len(p.parts), reverse=True)


def _remove_emptied_stages(points: list[Path]) -> None:
    """The attempts' stage dirs (mount points, a resolv.conf) once nothing is mounted in them."""
    from corral.runtimes.oci.userns import STAGE_ROOT

    for attempt in {p.parent for p in points if p.parent.parent.parent == STAGE_ROOT}:
        if not _mounts_under(attempt):
            shutil.rmtree(attempt, ignore_errors=True)
            with contextlib.suppress(OSError):
                attempt.parent.rmdir()  # the instance's dir, once no attempt of it is left


def clean_dead_siblings(work_dir: Path) -> list[str]:
    """Remove what dead workers with work dirs next to ours left; returns their directory names."""
    cleaned = []
    parent = work_dir.parent
    for sibling in sorted(parent.iterdir()) if parent.is_dir() else []:
        if sibling == work_dir or not (sibling / LOCK).is_file():
            continue
        try:
            fd = os.open(sibling / LOCK, os.O_RDWR | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                continue  # alive
            _clean_dead(sibling)
            cleaned.append(sibling.name)
        finally:
            os.close(fd)
    if cleaned:
        names = ", ".join(cleaned)
        log.warning("removed the cgroups and scratch of %d dead workers: %s", len(cleaned), names)
    return cleaned
