"""Hail's billing project routes (/api/v1alpha/billing_projects…) over Corral's billing projects.

Shapes follow Hail: {billing_project, users, status, limit, accrued_cost}. Creating, closing, reopening,
deleting projects, editing limits and managing members need an admin token, as in Hail (developers only)."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter, Request

from corral.api import billing_projects as ops
from corral.api.auth import AdminUser, CurrentUser
from corral.api.context import ApiContext, Context
from corral.errors import InvalidInput, NotFound
from corral.hail import bodies
from corral.store import users as user_store
from corral.store.users import BillingProjectSummary

router = APIRouter(tags=["hail"])


def _shape(p: BillingProjectSummary) -> dict[str, Any]:
    return {
        "billing_project": p.name, "users": p.users, "status": p.status,
        "limit": p.spend_limit, "accrued_cost": p.accrued_cost,
    }




@router.get("/billing_projects")
async def list_projects(ctx: Context, user: CurrentUser) -> list[dict[str, Any]]:
    async with ctx.reading() as conn:
        projects = await user_store.list_billing_projects(conn, member=None if user.is_admin else user.name)
    return [_shape(p) for p in projects]


@router.get("/billing_projects/{billing_project}")
async def get_project(billing_project: str, ctx: Context, user: CurrentUser) -> dict[str, Any]:
    async with ctx.reading() as conn:
        return _shape(await ops.visible_project(conn, billing_project, user))


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


@router.post("/billing_projects/{billing_project}/close")
async def close_project(billing_project: str, ctx: Context, _admin: AdminUser) -> str:
    """No new batches; running ones finish (Hail returns the project's name)."""
    return (await ops.close(ctx, billing_project)).name


@router.post("/billing_projects/{billing_project}/reopen")
async def reopen_project(billing_project: str, ctx: Context, _admin: AdminUser) -> str:
    return (await ops.reopen(ctx, billing_project)).name


@router.post("/billing_projects/{billing_project}/delete")
async def delete_project(billing_project: str, ctx: Context, _admin: AdminUser) -> str:
    """Only a closed project without running batches (409 otherwise)."""
    return (await ops.delete(ctx, billing_project)).name


@router.post("/billing_limits/{billing_project}/edit", openapi_extra=bodies.SPEND_LIMIT)
async def edit_limit(
    billing_project: str, request: Request, ctx: Context, _admin: AdminUser
) -> dict[str, Any]:
    """{"limit": amount | null}: set or remove the spend limit."""
    try:
        body = await request.json()
    except ValueError:
        raise InvalidInput("body: send JSON such as {\"limit\": 10.0}", field="body") from None
    if not isinstance(body, dict) or "limit" not in body:
        raise InvalidInput("limit: send {\"limit\": amount} (null removes the limit)", field="limit")
    project = await ops.set_limit(ctx, billing_project, ops.parse_limit(body["limit"]))
    return {"billing_project": project.name, "limit": project.spend_limit}
