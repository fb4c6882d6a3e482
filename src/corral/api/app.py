"""The FastAPI application of the user-facing REST API (OpenAPI at /openapi.json, docs at /docs)."""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import APIRouter, FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from corral import __version__
from corral.api.context import ApiContext
from corral.api.errors import document_errors, install_error_handlers
from corral.api.hooks import DriverHooks
from corral.api.hygiene import TextHygiene
from corral.api.limits import BodySizeLimit
from corral.api.routes import (
    admin,
    batches,
    bench,
    billing,
    instance_health,
    jobs,
    meta,
    retry,
    system,
    users,
)
from corral.config import Settings
from corral.ui import mount_ui


def create_app(
    settings: Settings,
    engine: AsyncEngine,
    hooks: DriverHooks,
    extra_routers: Sequence[APIRouter] = (),
    first_routers: Sequence[APIRouter] = (),
) -> FastAPI:
    """`first_routers` are matched before all others: the worker protocol's routes, called for every job
    (each request is matched against the routes in order)."""
    app = FastAPI(title="Corral", version=__version__, description="Durable, fair batch scheduling.")
    app.state.corral = ApiContext(settings=settings, engine=engine, hooks=hooks)
    install_error_handlers(app)
    app.add_middleware(TextHygiene)
    app.add_middleware(BodySizeLimit, max_bytes=settings.max_body_bytes)
    routers = (meta.router, batches.router, jobs.router, users.router, billing.router, admin.router,
               bench.router, instance_health.router)
    for router in (*first_routers, *routers, system.router, retry.router, *extra_routers):
        app.include_router(router)
    mount_ui(app)
    document_errors(app)
    return app
