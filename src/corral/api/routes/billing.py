"""Billing project routes: create and manage members (admin), list with accrued cost."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter

from corral.api.auth import AdminUser, CurrentUser
from corral.api.context import Context
from corral.api.schemas import BillingProjectCreate, BillingProjectStatus
from corral.errors import NotFound
from corral.store import users as user_store
from corral.store.users import BillingProjectSummary

router = APIRouter(prefix="/api/v1/billing-projects", tags=["billing"])


def _status(p: BillingProjectSummary) -> BillingProjectStatus:
    return BillingProjectStatus(
        billing_project=p.name,
        users=p.users,
        status=p.status,
        limit=p.spend_limit,
        accrued_cost=p.accrued_cost,
    )


@router.get("")
async def list_billing_projects(ctx: Context, user: CurrentUser) -> list[BillingProjectStatus]:
    """Admins see every billing project; users those they are members of."""
    async with ctx.reading() as conn:
        projects = await user_store.list_billing_projects(conn, member=None if user.is_admin else user.name)
    return [_status(p) for p in projects]


@router.post("")
async def create_billing_project(
    body: BillingProjectCreate, ctx: Context, _admin: AdminUser
) -> dict[str, Any]:
    async with ctx.writing() as conn:
        await user_store.create_billing_project(
            conn, body.name, spend_limit=body.spend_limit, now=time.time()
        )
    return {"billing_project": body.name}


async def _check_exists(ctx: Context, billing_project: str, user: str) -> None:
    async with ctx.reading() as conn:
        if await user_store.billing_project(conn, billing_project) is None:
            raise NotFound(
                f"billing_project: no billing project {billing_project!r}", field="billing_project"
            )
        if await user_store.user_by_name(conn, user) is None:
            raise NotFound(f"user: no user {user!r}; create it first with POST /api/v1/users", field="user")


@router.post("/{billing_project}/users/{user}")
async def add_member(billing_project: str, user: str, ctx: Context, _admin: AdminUser) -> dict[str, Any]:
    """Idempotent."""
    await _check_exists(ctx, billing_project, user)
    async with ctx.writing() as conn:
        await user_store.add_billing_project_user(conn, billing_project, user)
    return {"billing_project": billing_project, "user": user}


@router.delete("/{billing_project}/users/{user}")
async def remove_member(billing_project: str, user: str, ctx: Context, _admin: AdminUser) -> dict[str, Any]:
    """Idempotent; the user's existing batches stay theirs."""
    await _check_exists(ctx, billing_project, user)
    async with ctx.writing() as conn:
        await user_store.remove_billing_project_user(conn, billing_project, user)
    return {"billing_project": billing_project, "user": user}
