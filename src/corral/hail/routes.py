"""All Hail-compatible routers, mounted at /api/v1alpha (and /api/v2alpha) and again under the
deploy config's base path (/hail/batch/…), where the stock client sends its requests."""

from __future__ import annotations

from fastapi import APIRouter

from corral.hail import billing_routes, read_routes, submit_routes
from corral.hail.compat_dir import ROUTE_PREFIX


def _health() -> APIRouter:
    router = APIRouter(tags=["hail"])

    @router.get(ROUTE_PREFIX + "/healthcheck")
    async def healthcheck() -> dict[str, str]:
        return {"status": "ok"}

    return router


def hail_routers() -> list[APIRouter]:
    routers = [_health()]
    for base in ("", ROUTE_PREFIX):
        v1 = APIRouter(prefix=base + "/api/v1alpha")
        for part in (submit_routes.router, read_routes.router, billing_routes.router):
            v1.include_router(part)
        v2 = APIRouter(prefix=base + "/api/v2alpha")
        v2.include_router(read_routes.v2_router)
        routers += [v1, v2]
    return routers
