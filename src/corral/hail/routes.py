"""All Hail-compatible routers, mounted at /api/v1alpha (and /api/v2alpha) and again under the
deploy config's base path (/hail/batch/…), where the stock client sends its requests."""

from __future__ import annotations

from fastapi import APIRouter, Request

from corral.errors import NotFound
from corral.hail import billing_routes, read_routes, submit_routes
from corral.hail.compat_dir import ROUTE_PREFIX


def _health() -> APIRouter:
    router = APIRouter(tags=["hail"])

    @router.get(ROUTE_PREFIX + "/healthcheck")
    async def healthcheck() -> dict[str, str]:
        return {"status": "ok"}

    return router


def _unknown(prefix: str) -> APIRouter:
    """Last: a Hail endpoint Corral does not have is a 404 that says so (the client retries 5xx)."""
    router = APIRouter(prefix=prefix, include_in_schema=False)

    @router.api_route("/{rest:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"])
    async def unknown(rest: str, request: Request) -> None:
        raise NotFound(
            f"path: {request.method} {request.url.path} is not an endpoint of Corral's Hail-compatible API "
            "(see /docs for the ones it has)",
            field="path",
        )

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
    for base in ("", ROUTE_PREFIX):
        routers += [_unknown(base + "/api/v1alpha"), _unknown(base + "/api/v2alpha")]
    return routers
