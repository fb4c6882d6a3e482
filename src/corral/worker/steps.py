"""The input and output steps: copy files between URLs and the job's io dir, each with its own log.

Local files (`file://`, checked against the user's roots at submission) are copied by `cp` running as
the job's own uid, so the copy can read and write only what the job could. Other URLs go through
fsspec in the worker; the job's /io side of those copies never follows a link out of /io.
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Literal

from corral.errors import InvalidInput
from corral.files import TransferError, copy_in, copy_out, host_path
from corral.files.roots import local_path
from corral.runtimes.base import now
from corral.runtimes.identity import JobUser
from corral.worker.protocol import FileSpec, StepStatus

Direction = Literal["input", "output"]

# $1 source, $2 destination: a directory's contents merge into the destination; a file is replaced whole.
COPY_SCRIPT = (
    'set -e; mkdir -p -- "$(dirname -- "$2")"; '
    'if [ -d "$1" ]; then mkdir -p -- "$2"; cp -R -- "$1/." "$2"; '
    'else cp -- "$1" "$2.corral-part"; mv -f -- "$2.corral-part" "$2"; fi'
)


async def copy_step(
    direction: Direction, files: list[FileSpec], io_dir: Path, log_path: Path, cancel: asyncio.Event,
    *, user: JobUser | None = None, access: str = "job",
) -> StepStatus:
    """Copy every file in order; the first failure ends the step with an error naming the file."""
    start = now()
    lines: list[str] = []
    status = StepStatus(direction, "succeeded", start, start)
    as_job = user if access != "worker" else None
    for spec in files:
        if cancel.is_set():
            status.state, status.error = "cancelled", "cancelled"
            break
        try:
            size = await _copy_one(direction, spec, io_dir, as_job)
        except (TransferError, InvalidInput) as exc:
            reason = exc.reason if isinstance(exc, TransferError) else exc.message
            status.state = "error"
            status.error = f"{direction}: could not copy {spec.source} to {spec.dest}: {reason}"
            lines.append(status.error)
            break
        except Exception as exc:  # a bug or an fsspec backend's own error: still name the file
            status.state = "error"
            status.error = f"{direction}: could not copy {spec.source} to {spec.dest}: {exc!r}"
            lines.append(status.error)
            break
        lines.append(f"copied {spec.source} to {spec.dest} ({size} bytes)")
    status.end = now()
    await asyncio.to_thread(_write_log, log_path, lines)
    return status


async def _copy_one(direction: Direction, spec: FileSpec, io_dir: Path, user: JobUser | None) -> int:
    url = spec.source if direction == "input" else spec.dest
    local = local_path(url, field=direction)
    in_io = host_path(io_dir, spec.dest if direction == "input" else spec.source)
    if direction == "output":
        await asyncio.to_thread(_check_inside, in_io, io_dir)
    if local is not None and user is not None:
        # The /io side relative to the io dir (the copy's cwd): the job's uid need not enter its parents.
        mine = "./" + str(in_io.relative_to(io_dir)) if in_io != io_dir else "."
        src, dest = (local, mine) if direction == "input" else (mine, local)
        await _copy_as(user, src, dest, url, io_dir)
        return await asyncio.to_thread(_tree_size, in_io if direction == "input" else Path(local))
    if direction == "input":
        return await asyncio.to_thread(copy_in, spec.source, in_io)
    return await asyncio.to_thread(copy_out, in_io, spec.dest)


async def _copy_as(user: JobUser, src: str, dest: str, url: str, io_dir: Path) -> None:
    proc = await asyncio.create_subprocess_exec(
        "setpriv", f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", "--no-new-privs",
        "--inh-caps=-all", "--bounding-set=-all", "--", "/bin/sh", "-c", COPY_SCRIPT, "copy", src, dest,
        stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}, cwd=io_dir,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        text = err.decode(errors="replace").strip().splitlines()
        reason = text[-1].split(": ", 1)[-1].lower() if text else f"exit code {proc.returncode}"
        raise TransferError(url, f"{reason} (copied as the job's user)")


def _check_inside(path: Path, io_dir: Path) -> None:
    """An output and everything under it must stay in /io: a link to a host file is not an output."""
    root = os.path.realpath(io_dir)

    def inside(p: str) -> bool:
        real = os.path.realpath(p)
        return real == root or real.startswith(root + os.sep)

    if not inside(str(path)):
        raise InvalidInput(f"{path.name!r} links outside /io; outputs must be files under /io")
    if path.is_dir() and not path.is_symlink():
        for base, dirs, names in os.walk(path):
            for name in (*dirs, *names):
                if not inside(os.path.join(base, name)):
                    raise InvalidInput(f"{name!r} links outside /io; outputs must be files under /io")


def _tree_size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _write_log(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
