"""Hail's billing project routes (/api/v1alpha/billing_projects…) over Corral's billing projects.

Shapes follow Hail: {billing_project, users, status, limit, accrued_cost}. Creating projects and
managing members needs an admin token, as in Hail (developers only)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter

from corral.api.auth import AdminUser, CurrentUser
from corral.api.context import ApiContext, Context
from corral.errors import InvalidInput, NotFound
from corral.store import users as user_store
from corral.store.users import BillingProjectSummary

router = APIRouter(tags=["hail"])


def _shape(p: BillingProjectSummary) -> dict[str, Any]:
    return {
        "billing_project": p.name, "users": p.users, "status": p.status,
        "limit": p.spend_limit, "accrued_cost": p.accrued_cost,
    }


async def _find(ctx: ApiContext, name: str, member: str | None) -> dict[str, Any]:
    async with ctx.reading() as conn:
        projects = await user_store.list_billing_projects(conn, member=member)
    for p in projects:
        if p.name == name:
            return _shape(p)
    raise NotFound(f"billing_project: no billing project {name!r} you can see", field="billing_project")


@router.get("/billing_projects")
async def list_projects(ctx: Context, user: CurrentUser) -> list[dict[str, Any]]:
    async with ctx.reading() as conn:
        projects = await user_store.list_billing_projects(conn, member=None if user.is_admin else user.name)
    return [_shape(p) for p in projects]


@router.get("/billing_projects/{billing_project}")
async def get_project(billing_project: str, ctx: Context, user: CurrentUser) -> dict[str, Any]:
    return await _find(ctx, billing_project, None if user.is_admin else user.name)


@router.post("/billing_projects/{billing_project}/create")
async def create_project(billing_project: str, ctx: Context, _admin: AdminUser) -> str:
    async with ctx.writing() as conn:
        await user_store.create_billing_project(conn, billing_project, spend_limit=None, now=time.time())
    return billing_project


async def _member(ctx: ApiContext, billing_project: str, user: str, *, add: bool) -> dict[str, Any]:
    async with ctx.writing() as conn:
        if await user_store.billing_project(conn, billing_project) is None:
            raise NotFound(f"billing_project: no project {billing_project!r}", field="billing_project")
        if await user_store.user_by_name(conn, user) is None:
            raise NotFound(f"user: no user {user!r}", field="user")
        if add:
            await user_store.add_billing_project_user(conn, billing_project, user)
        else:
            await user_store.remove_billing_project_user(conn, billing_project, user)
    return {"billing_project": billing_project, "user": user}


@router.post("/billing_projects/{billing_project}/users/{user}/add")
async def add_user(billing_project: str, user: str, ctx: Context, _admin: AdminUser) -> dict[str, Any]:
    return await _member(ctx, billing_project, user, add=True)


@router.post("/billing_projects/{billing_project}/users/{user}/remove")
async def remove_user(billing_project: str, user: str, ctx: Context, _admin: AdminUser) -> dict[str, Any]:
    return await _member(ctx, billing_project, user, add=False)


@router.post("/billing_projects/{billing_project}/{action}")
async def unsupported_action(billing_project: str, action: str, _admin: AdminUser) -> None:
    raise InvalidInput(
        f"action: {action!r} of billing projects is not available on this server; set limits and close "
        "projects with Corral's own API (/api/v1/billing-projects)",
        field="action",
    )


@router.post("/billing_limits/{billing_project}/edit")
async def edit_limit(billing_project: str, _admin: AdminUser) -> None:
    raise InvalidInput(
        "billing_limits: editing limits through the Hail API is not available; use Corral's "
        "/api/v1/billing-projects",
        field="billing_limits",
    )
