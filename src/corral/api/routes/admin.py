"""Admin routes: the system checks its own invariants (`corral admin check`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from corral.api.auth import AdminUser
from corral.api.context import Context
from corral.store.invariants import Violation, check_store

router = APIRouter(prefix="/api/v1/admin", tags=["admin"])


@router.get("/check")
async def check(ctx: Context, _admin: AdminUser) -> dict[str, Any]:
    """Batch counters vs job states, running attempts vs instances and jobs, parents before children;
    with a driver in this process, also its running cores and assignments vs the store."""
    driver_check = getattr(ctx.hooks, "check_invariants", None)
    violations: list[Violation]
    if driver_check is not None:
        violations = await driver_check()
        checked = ["store", "driver"]
    else:
        async with ctx.reading() as conn:
            violations = await check_store(conn)
        checked = ["store"]
    return {
        "ok": not violations,
        "checked": checked,
        "violations": [{"check": v.check, "detail": v.detail} for v in violations],
    }
