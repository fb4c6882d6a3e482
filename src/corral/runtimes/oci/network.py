"""A container on the host's network gets the host's resolv.conf (private networks: runtimes/network.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from corral.runtimes.oci.bundle import bind


def public_mounts() -> list[dict[str, Any]]:
    resolv = Path("/etc/resolv.conf")
    return [bind(resolv.resolve(), "/etc/resolv.conf", readonly=True)] if resolv.exists() else []
