"""Ended attempts' scratch trees reused by the next attempts, instead of made and deleted for each.

Each attempt's scratch is a few directories and a log file (worker/layout.py). Made and deleted for every
job, they cost the worker more than anything else it does for a short job on ext4: the file system avoids
reusing an inode freed in the last minute, so with thousands of directories deleted a minute every new
one is found only after a scan over the recently freed (`bench.cpu_per_job --runtime host`: the worker's
CPU a job 1.21 ms on ext4 against 0.75 on tmpfs, where nothing else differs).

So an ended attempt's tree that holds nothing of its job is kept and renamed for the next attempt:

* only a clean tree: `vol` a plain directory (no volume mounted on it, not a symlink) holding exactly
  empty `io` and `tmp` directories, and besides `vol` only the attempts' step logs; anything else the job
  left (a file, a directory, a symlink) sends the tree to the sweeper, as before;
* its logs are emptied (kept: the next attempt writes its own from the start), `io` and `tmp` get back
  the mode a new directory gets; nothing is kept by name: the next attempt renames it to its own;
* at most KEEP trees are kept, under `<work_dir>/idle`, which the worker's start clears with the rest of
  its scratch (ScratchLayout.prepare), as any dead worker's work dir is cleared.

Only for runtimes whose jobs all run as the worker's own user (the host runtime): the process runtime's
jobs own their `io` and `tmp` under uids of their own, whose ownership, extended attributes and ACLs a
reuse would have to undo.
"""

from __future__ import annotations

import itertools
import logging
import os
from pathlib import Path

from corral.worker.layout import IO, TMP, VOLUME, AttemptDirs

log = logging.getLogger(__name__)

KEEP = 64  # idle trees at most: more than a worker runs at once


def new_dir_mode() -> int:
    """The mode a new directory gets here (0o777 less the umask, read without changing it)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o777 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o755


def clean_logs(root: str) -> list[str] | None:
    """The step logs of a tree that holds nothing else of its job; None if it is not clean."""
    logs: list[str] = []
    volume_dev = -1
    with os.scandir(root) as entries:
        for entry in entries:
            if entry.name == VOLUME and entry.is_dir(follow_symlinks=False):
                volume_dev = entry.stat(follow_symlinks=False).st_dev
            elif entry.name.endswith(".log") and entry.is_file(follow_symlinks=False):
                logs.append(entry.path)
            else:
                return None
    if volume_dev < 0 or volume_dev != os.stat(root).st_dev:
        return None  # no volume dir, or a volume still mounted on it
    volume = os.path.join(root, VOLUME)
    with os.scandir(volume) as entries:
        found = sorted((e.name, e.is_dir(follow_symlinks=False)) for e in entries)
    if found != [(IO, True), (TMP, True)]:
        return None
    for name in (IO, TMP):
        with os.scandir(os.path.join(volume, name)) as entries:
            if next(entries, None) is not None:
                return None
    return logs


class ScratchPool:
    def __init__(self, idle_dir: Path, keep: int = KEEP) -> None:
        self.idle_dir = str(idle_dir)
        self.keep = keep
        self.idle: list[str] = []
        self.mode = new_dir_mode()
        self._names = itertools.count()
        self.reused = 0  # for tests and benches
        self.kept = 0

    def take(self, dirs: AttemptDirs) -> bool:
        """An idle tree renamed to `dirs.root` for a new attempt; False when none is idle (or it failed)."""
        while self.idle:
            path = self.idle.pop()
            try:
                os.rename(path, dirs.root)
            except OSError as exc:
                log.debug("idle scratch %s not reusable (%s)", path, exc)
                continue  # left under idle/: the worker's next start clears it
            self.reused += 1
            return True
        return False

    def give_back(self, dirs: AttemptDirs) -> bool:
        """Keep an ended attempt's tree if it is clean (True), else leave it where it is (False)."""
        if len(self.idle) >= self.keep:
            return False
        root = str(dirs.root)
        try:
            logs = clean_logs(root)
            if logs is None:
                return False
            for path in logs:
                os.truncate(path, 0)
            volume = os.path.join(root, VOLUME)
            for name in (IO, TMP):
                os.chmod(os.path.join(volume, name), self.mode)
            target = os.path.join(self.idle_dir, str(next(self._names)))
            os.rename(root, target)
        except OSError as exc:
            log.debug("scratch %s not kept (%s)", root, exc)
            return False
        self.idle.append(target)
        self.kept += 1
        return True

    def drain(self) -> list[Path]:
        """Every idle tree, no longer kept (for the sweeper)."""
        idle, self.idle = self.idle, []
        return [Path(p) for p in idle]


__all__ = ["KEEP", "ScratchPool", "clean_logs"]
