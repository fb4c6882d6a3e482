"""Mounts a container needs on the host: its overlay root (the /io volume lives in runtimes/volume.py)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from corral.runtimes.volume import mount, mount_io_volume, unmount, unmount_io_volume

__all__ = ["mount_io_volume", "mount_overlay", "unmount", "unmount_io_volume"]


def mount_overlay(lower: str, scratch: Path, root: Path | None = None) -> Path:
    """scratch/{upper,work} over the read-only image at `root` (default scratch/rootfs); the container's
    writes stay in its scratch."""
    root, upper, work = root or scratch / "rootfs", scratch / "upper", scratch / "work"
    for d in (root, upper, work):
        d.mkdir(parents=True, exist_ok=True)
    top = os.stat(lower.split(":")[0])  # the merged root takes the upper dir's owner and mode
    os.chown(upper, top.st_uid, top.st_gid)
    os.chmod(upper, stat.S_IMODE(top.st_mode))
    mount("overlay", root, "overlay", f"lowerdir={lower},upperdir={upper},workdir={work}")
    return root
