"""Paths a job sees under /io, mapped to the job's io directory on the host."""

from __future__ import annotations

import posixpath
from pathlib import Path

from corral.errors import InvalidInput

IO_ROOT = "/io"


def host_path(io_dir: Path, path: str) -> Path:
    """'/io/a/b' (or 'a/b', relative to /io) -> io_dir/a/b; anything escaping /io is refused."""
    text = path.strip()
    if not text:
        raise InvalidInput("an empty path is not a file under /io")
    absolute = text if text.startswith("/") else posixpath.join(IO_ROOT, text)
    normal = posixpath.normpath(absolute)
    if normal == IO_ROOT:
        return io_dir
    if not normal.startswith(IO_ROOT + "/"):
        raise InvalidInput(f"{path!r} is not under {IO_ROOT}/: job files must live in {IO_ROOT}")
    return io_dir / normal[len(IO_ROOT) + 1 :]
