"""A job's state and why, in words (pure): the job JSON's own `reason`/`waiting_reason` first."""

from __future__ import annotations

from typing import Any

from corral.ui.render import size


def state_reason(job: dict[str, Any]) -> str:
    """E.g. 'timed out after 60 s', 'out of memory at 512.0 MiB', 'waiting: needs 4 cores ...'."""
    state = str(job.get("state"))
    if state in ("Pending", "Ready") and job.get("waiting_reason"):
        return f"waiting: {job['waiting_reason']}"
    if job.get("reason"):
        return str(job["reason"])
    status = job.get("status") or {}
    spec = job.get("spec") or {}
    if state == "Pending":
        return "waiting for its parents to finish"
    if state == "Ready":
        return "ready: waiting for free cores in its pool"
    if state == "Running":
        return "running"
    if status.get("timed_out"):
        timeout = spec.get("timeout")
        return f"timed out after {timeout:g} s" if isinstance(timeout, int | float) else "timed out"
    if status.get("out_of_memory"):
        limit = spec.get("memory_bytes")
        return f"out of memory at {size(limit)}" if limit else "out of memory"
    if state == "Success":
        return "succeeded (exit code 0)"
    if state == "Failed":
        code = job.get("exit_code")
        return f"failed with exit code {code}" if code is not None else "failed"
    if state == "Error":
        error = status.get("error")
        return f"error: {str(error).splitlines()[0]}" if error else "error"
    if state == "Cancelled":
        if not status:
            return "cancelled before it ran (its batch was cancelled or a parent did not succeed)"
        return "cancelled while running"
    return state
