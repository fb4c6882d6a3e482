"""The worker's scratch directory: one directory per attempt with its io dir, /tmp and step logs."""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from corral.home import default_home
from corral.runtimes.cgroups import safe_name
from corral.worker.protocol import StepName


def default_work_dir(instance_name: str) -> Path:
    return default_home() / "worker" / safe_name(instance_name)


VOLUME, IO, TMP = "vol", "io", "tmp"  # an attempt's scratch: <root>/vol/{io,tmp}


@dataclass(frozen=True)
class AttemptDirs:
    """An attempt's paths, each joined once (cached): a short job's start and end ask for them a dozen
    times, and joining a Path is most of what asking costs."""

    root: Path

    @cached_property
    def volume(self) -> Path:
        """The job's storage: a volume of its requested size when it asks for one; /io and /tmp live in it."""
        return self.root / VOLUME

    @cached_property
    def io(self) -> Path:
        return self.volume / IO

    @cached_property
    def tmp(self) -> Path:
        return self.volume / TMP

    def log(self, step: StepName) -> Path:
        return self.root / f"{step}.log"

    def create(self) -> None:
        """The attempt's dirs, except its volume (the runtime's `prepare_io` makes it: a mount point, a
        pooled volume's symlink, or nothing) and /io and /tmp in it (`create_io`, after that)."""
        self.root.mkdir(parents=True, exist_ok=True)

    def real(self, path: Path) -> Path:
        """`path` (in the volume) with the volume's symlink resolved, if it is one."""
        if self.volume.is_symlink():
            target = os.path.join(self.volume.parent, os.readlink(self.volume))
            return Path(os.path.normpath(target)) / path.relative_to(self.volume)
        return path

    def create_io(self) -> None:
        for d in (self.io, self.tmp):
            d.mkdir(parents=True, exist_ok=True)


@dataclass(frozen=True)
class ScratchLayout:
    """<work_dir>/jobs/<attempt key>/{<step>.log, vol/{io,tmp}}; trash/ and idle/ beside jobs/"""

    work_dir: Path

    @property
    def jobs(self) -> Path:
        return self.work_dir / "jobs"

    @property
    def trash(self) -> Path:
        """Ended attempts' dirs waiting for the background removal (worker/sweeper.py)."""
        return self.work_dir / "trash"

    @property
    def idle(self) -> Path:
        """Clean scratch trees of ended attempts waiting for the next (worker/scratch_pool.py)."""
        return self.work_dir / "idle"

    def attempt(self, key: str) -> AttemptDirs:
        return AttemptDirs(self.jobs / safe_name(key))

    def prepare(self) -> None:
        """Create the work dir and clear what a previous run of this worker left behind."""
        for left in (self.jobs, self.trash, self.idle):
            if left.exists():
                shutil.rmtree(left, ignore_errors=True)
            left.mkdir(parents=True, exist_ok=True)
