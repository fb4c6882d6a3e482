"""Health and version (no authentication)."""

from __future__ import annotations

from fastapi import APIRouter

from corral import __version__

router = APIRouter(tags=["meta"])


@router.get("/healthcheck")
async def healthcheck() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/api/v1/version")
async def version() -> dict[str, str]:
    return {"version": __version__}
