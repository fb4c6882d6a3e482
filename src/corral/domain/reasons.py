"""Why a job ended, in words a user understands (pure: computed from what the store keeps)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


def human_bytes(n: int) -> str:
    """1073741824 -> '1 GiB', 1610612736 -> '1.5 GiB', 512 -> '512 B'."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            text = f"{value:.1f}".rstrip("0").rstrip(".")
            return f"{text} {unit}"
        value /= 1024
    raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True, slots=True)
class FailedParent:
    """A parent that did not succeed (the first, by job id), for a job cancelled because of it."""

    job_id: int
    state: str
    name: str | None = None


_PARENT_VERBS = {"Failed": "failed", "Error": "ended in error", "Cancelled": "was cancelled"}


def _seconds(value: Any) -> str:
    number = float(value)
    return f"{number:g}s"


def ended_reason(
    state: str,
    *,
    exit_code: int | None,
    status: dict[str, Any] | None,
    memory_bytes: int,
    timeout: Any = None,
    n_attempts: int = 0,
    failed_parent: FailedParent | None = None,
    batch_cancelled: bool = False,
) -> str | None:
    """One sentence for a job in a complete state (None while it is not complete or it succeeded)."""
    status = status or {}
    if state == "Success":
        return None
    if state == "Cancelled":
        if failed_parent is not None:
            name = f" ({failed_parent.name})" if failed_parent.name else ""
            verb = _PARENT_VERBS.get(failed_parent.state, f"ended {failed_parent.state}")
            return f"cancelled because its parent job {failed_parent.job_id}{name} {verb}"
        started = bool(status.get("container_statuses")) or n_attempts > 0
        if not started:
            why = "the batch was cancelled" if batch_cancelled else "it was cancelled"
            return f"cancelled before it started: {why}"
        return "cancelled while running" + (": the batch was cancelled" if batch_cancelled else "")
    if state not in ("Failed", "Error"):
        return None
    if status.get("timed_out"):
        limit = f" after {_seconds(timeout)}" if timeout else ""
        return f"timed out{limit} (the job's timeout)"
    if status.get("out_of_memory"):
        code = f" (exit code {exit_code})" if exit_code is not None else ""
        return f"out of memory: it used more than its {human_bytes(memory_bytes)} memory limit{code}"
    error = status.get("error")
    if isinstance(error, str) and error.strip():
        return error.strip().splitlines()[0][:300]
    if exit_code is not None:
        if exit_code > 128:
            return f"the command was killed by signal {exit_code - 128} (exit code {exit_code})"
        return f"the command exited with code {exit_code}"
    return "ended with an error (no details were reported)"
