"""What a SLURM job state means for the Corral instance it carries (pure)."""

from __future__ import annotations

from corral.providers.base import InstanceStatus

# Not running yet, or held back: the worker has not started (or is frozen) but may still run.
_PENDING = {
    "PENDING", "CONFIGURING", "REQUEUED", "REQUEUE_HOLD", "REQUEUE_FED", "RESV_DEL_HOLD", "RESIZING",
    "SUSPENDED", "STOPPED",
}
_RUNNING = {"RUNNING", "COMPLETING", "SIGNALING", "STAGE_OUT", "UPDATE_DB"}
# Final states, with the reason Corral records for the attempts lost with the instance.
GONE_REASONS = {
    "CANCELLED": "cancelled",
    "TIMEOUT": "time limit",
    "DEADLINE": "time limit",
    "NODE_FAIL": "node failure",
    "BOOT_FAIL": "node failure",
    "PREEMPTED": "preempted",
    "OUT_OF_MEMORY": "out of memory",
    "FAILED": "worker failed",
    "COMPLETED": "worker exited",
    "REVOKED": "revoked",
    "SPECIAL_EXIT": "worker failed",
}
UNKNOWN_GONE = "left SLURM without a record"


def classify(state: str) -> tuple[InstanceStatus, str | None]:
    """SLURM state (squeue %T or sacct State) -> (status, reason when gone)."""
    word = state.split()[0].upper().rstrip("+") if state.strip() else ""
    if word in _PENDING:
        return "pending", None
    if word in _RUNNING:
        return "running", None
    return "gone", GONE_REASONS.get(word, f"slurm state {word.lower() or 'unknown'}")
