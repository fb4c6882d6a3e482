"""One rented instance as the provider keeps it, and how vast.ai's view of it maps to ours."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from corral.providers.base import InstanceStatus
from corral.providers.ssh.session import HostSession


@dataclass
class Rented:
    name: str
    vast_id: int
    machine_id: int
    offer: dict[str, Any]
    price: float
    is_bid: bool
    label: str
    status: InstanceStatus = "pending"
    reason: str | None = None
    session: HostSession | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    health: list[dict[str, Any]] = field(default_factory=list)
    sampler: asyncio.Task[None] | None = None
    reason_from_listing: bool = False  # vast.ai's own word (offline, stopped): it outranks host symptoms


def gone_reason(r: Rented, info: dict[str, Any] | None) -> str | None:
    """Why a running instance is gone, from its listing entry or its SSH session (None: it is fine)."""
    listed = listing_reason(r, info)
    if listed is not None:
        return listed
    if r.session is not None and not r.session.alive:
        return r.session.lost or "the SSH connection ended"
    return None


def listing_reason(r: Rented, info: dict[str, Any] | None) -> str | None:
    """Why vast.ai's listing says the instance is gone (None: it lists it as fine)."""
    if info is None:
        return "vast.ai no longer lists the instance (destroyed outside corral)"
    status = info.get("actual_status")
    message = str(info.get("status_msg") or "")
    if status == "offline":
        return f"host offline (machine {r.machine_id})"
    if status == "unknown":
        return f"host stopped reporting (status unknown, machine {r.machine_id})"
    if status in ("stopped", "exited", "frozen") or info.get("intended_status") == "stopped":
        if r.is_bid:
            return f"preempted: the interruptible instance was stopped ({message or 'outbid'})"
        return f"instance {status}: {message or 'stopped'}"
    return None
