"""Mounts a container needs on the host: its overlay root (the /io volume lives in runtimes/volume.py)."""

from __future__ import annotations

from pathlib import Path

from corral.runtimes.volume import mount, mount_io_volume, unmount, unmount_io_volume

__all__ = ["mount_io_volume", "mount_overlay", "unmount", "unmount_io_volume"]


def mount_overlay(lower: str, scratch: Path) -> Path:
    """scratch/{upper,work} over the read-only image; the container's writes stay in its scratch."""
    root, upper, work = scratch / "rootfs", scratch / "upper", scratch / "work"
    for d in (root, upper, work):
        d.mkdir(parents=True, exist_ok=True)
    mount("overlay", root, "overlay", f"lowerdir={lower},upperdir={upper},workdir={work}")
    return root
