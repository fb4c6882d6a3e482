"""An instance's preparation report and health history (`corral instance get` renders them)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from corral.api.auth import CurrentUser
from corral.api.context import Context
from corral.errors import NotFound
from corral.store import instances as instance_store

router = APIRouter(prefix="/api/v1", tags=["instances"])


def health_section(metadata: dict[str, Any]) -> dict[str, Any]:
    """The part of an instance's metadata users see about its preparation and health."""
    latest = metadata.get("health")
    return {
        "prepare": metadata.get("prepare"),
        "failure": metadata.get("failure"),
        "healthy": latest.get("healthy") if isinstance(latest, dict) else None,
        "latest": latest,
        "history": metadata.get("health_history") or [],
    }


@router.get("/instances/{name}/health")
async def instance_health(name: str, ctx: Context, _user: CurrentUser) -> dict[str, Any]:
    async with ctx.reading() as conn:
        rec = await instance_store.instance_by_name(conn, name)
    if rec is None:
        raise NotFound(f"no instance named {name!r}", field="name")
    section = health_section(rec.metadata)
    return {"name": rec.name, "collection": rec.collection, "state": rec.state, **section}
