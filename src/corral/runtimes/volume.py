"""A job's storage as a volume of its requested size: ext4 on a sparse loop file, holding /io and /tmp.

Only jobs that ask for storage pay for it (mkfs + mount, ~50 ms here); writing past the size fails
with "No space left on device" inside the job, and nothing reaches the host's disk beyond it.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import errno
import os
import shutil
from pathlib import Path

from corral.runtimes.libc import libc

MNT_DETACH = 2
MIB = 1024 * 1024


def mount(source: str, target: Path, fstype: str, options: str, flags: int = 0) -> None:
    """mount(2) directly: an exec of mount(8) per container costs more than the container's start."""
    if libc().mount(source.encode(), str(target).encode(), fstype.encode(), flags, options.encode()) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"mount {fstype} on {target}: {os.strerror(err)}")


def unmount(target: Path) -> None:
    if libc().umount2(str(target).encode(), MNT_DETACH) != 0:
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOENT):  # not mounted: nothing to do
            raise OSError(err, f"umount {target}: {os.strerror(err)}")


async def _run(*argv: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise OSError(f"{argv[0]} failed: {err.decode(errors='replace').strip()}")


def volume_file(io_dir: Path) -> Path:
    return io_dir.parent / f"{io_dir.name}.ext4"


def volume_full(directory: Path, slack: int = MIB) -> bool:
    """The volume at `directory` has (almost) no space left: why a job that wrote there failed."""
    try:
        st = os.statvfs(directory)
    except OSError:
        return False
    return st.f_bavail * st.f_frsize < slack


def no_space_left(io_dir: Path, requested: int, default: int) -> str | None:
    """The failed job's reason when it filled its storage (its request, or the site's default)."""
    if not (requested or default) or not volume_full(io_dir):
        return None
    if requested:
        return f"No space left: the job filled its storage request of {requested} bytes (/io and /tmp)"
    return (f"No space left: the job filled its storage of {default} bytes (/io and /tmp; it requested none, "
            "so it had the site's [jobs] default_storage)")


async def mount_io_volume(io_dir: Path, storage_bytes: int) -> None:
    """/io becomes an ext4 file system of the requested size (a sparse loop file): writing more fails."""
    mkfs = shutil.which("mkfs.ext4") or "/sbin/mkfs.ext4"
    image = volume_file(io_dir)
    # ext4's own metadata takes a little: add it so the job gets the bytes it asked for.
    size = storage_bytes + max(2 * MIB, storage_bytes // 32)
    try:
        with open(image, "wb") as f:
            f.truncate(size)
        await _run(mkfs, "-q", "-F", "-m", "0", "-O", "^has_journal", "-E", "nodiscard", str(image))
        await _run("mount", "-o", "loop,nosuid,nodev", str(image), str(io_dir))
    except OSError as exc:
        image.unlink(missing_ok=True)
        raise OSError(f"could not make /io a volume of {storage_bytes} bytes (ext4 on a loop device): {exc}"
                      ) from exc
    with contextlib.suppress(OSError):
        (io_dir / "lost+found").rmdir()
    os.chmod(io_dir, 0o755)


def unmount_io_volume(io_dir: Path) -> None:
    image = volume_file(io_dir)
    if image.exists():
        unmount(io_dir)  # the loop device is released with its last mount (autoclear)
        image.unlink(missing_ok=True)
