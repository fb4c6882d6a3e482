"""The input and output steps: copy files between URLs and the job's io dir, each with its own log."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Literal

from corral.errors import InvalidInput
from corral.files import TransferError, copy_in, copy_out, host_path
from corral.runtimes.base import now
from corral.worker.protocol import FileSpec, StepStatus

Direction = Literal["input", "output"]


async def copy_step(
    direction: Direction, files: list[FileSpec], io_dir: Path, log_path: Path, cancel: asyncio.Event
) -> StepStatus:
    """Copy every file in order; the first failure ends the step with an error naming the file."""
    start = now()
    lines: list[str] = []
    status = StepStatus(direction, "succeeded", start, start)
    for spec in files:
        if cancel.is_set():
            status.state, status.error = "cancelled", "cancelled"
            break
        try:
            if direction == "input":
                size = await asyncio.to_thread(copy_in, spec.source, host_path(io_dir, spec.dest))
            else:
                size = await asyncio.to_thread(copy_out, host_path(io_dir, spec.source), spec.dest)
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


def _write_log(path: Path, lines: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))
