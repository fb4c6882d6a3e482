"""Billing routes: billing projects (create, members, close/reopen/delete, spend limit; admin) readable by
their members with their spend, spend reports and the rates in force."""

from __future__ import annotations

import re
import time
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query

from corral.api import billing_projects as ops
from corral.api.auth import AdminUser, CurrentUser
from corral.api.context import Context
from corral.api.costs import wire
from corral.api.schemas import (
    BillingProjectCreate,
    BillingProjectStatus,
    BillingReport,
    BillingReportLine,
    SpendLimit,
)
from corral.domain.billing.pricing import RATE_UNITS, kind_of
from corral.domain.billing.reports import UsageEntry, report
from corral.errors import InvalidInput, NotFound
from corral.store import ledger
from corral.store import users as user_store
from corral.store.users import BillingProjectSummary

projects_router = APIRouter(prefix="/api/v1/billing-projects", tags=["billing"])
report_router = APIRouter(prefix="/api/v1/billing", tags=["billing"])
_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


def _status(p: BillingProjectSummary) -> BillingProjectStatus:
    return BillingProjectStatus(
        billing_project=p.name,
        users=p.users,
        status=p.status,
        limit=p.spend_limit,
        accrued_cost=p.accrued_cost,
    )


@projects_router.get("")
async def list_billing_projects(ctx: Context, user: CurrentUser) -> list[BillingProjectStatus]:
    """Admins see every billing project (not deleted ones); users those they are members of."""
    async with ctx.reading() as conn:
        projects = await user_store.list_billing_projects(conn, member=None if user.is_admin else user.name)
    return [_status(p) for p in projects]


@projects_router.post("")
async def create_billing_project(
    body: BillingProjectCreate, ctx: Context, _admin: AdminUser
) -> dict[str, Any]:
    limit = ops.parse_limit(body.spend_limit, field="spend_limit")
    async with ctx.writing() as conn:
        await user_store.create_billing_project(conn, body.name, spend_limit=limit, now=time.time())
    return {"billing_project": body.name}


@projects_router.get("/{billing_project}")
async def get_billing_project(billing_project: str, ctx: Context, user: CurrentUser) -> BillingProjectStatus:
    """A project you are a member of (any project for admins), with its spend; 404 otherwise."""
    async with ctx.reading() as conn:
        return _status(await ops.visible_project(conn, billing_project, user))


async def _check_exists(ctx: Context, billing_project: str, user: str) -> None:
    async with ctx.reading() as conn:
        if await user_store.billing_project(conn, billing_project) is None:
            raise NotFound(
                f"billing_project: no billing project {billing_project!r}", field="billing_project"
            )
        if await user_store.user_by_name(conn, user) is None:
            raise NotFound(f"user: no user {user!r}; create it first with POST /api/v1/users", field="user")


@projects_router.post("/{billing_project}/users/{user}")
async def add_member(billing_project: str, user: str, ctx: Context, _admin: AdminUser) -> dict[str, Any]:
    """Idempotent."""
    await _check_exists(ctx, billing_project, user)
    async with ctx.writing() as conn:
        await user_store.add_billing_project_user(conn, billing_project, user)
    return {"billing_project": billing_project, "user": user}


@projects_router.delete("/{billing_project}/users/{user}")
async def remove_member(billing_project: str, user: str, ctx: Context, _admin: AdminUser) -> dict[str, Any]:
    """Idempotent; the user's existing batches stay theirs."""
    await _check_exists(ctx, billing_project, user)
    async with ctx.writing() as conn:
        await user_store.remove_billing_project_user(conn, billing_project, user)
    return {"billing_project": billing_project, "user": user}


@projects_router.post("/{billing_project}/close")
async def close(billing_project: str, ctx: Context, _admin: AdminUser) -> BillingProjectStatus:
    """No new batches or updates (403); running batches finish."""
    return _status(await ops.close(ctx, billing_project))


@projects_router.post("/{billing_project}/reopen")
async def reopen(billing_project: str, ctx: Context, _admin: AdminUser) -> BillingProjectStatus:
    return _status(await ops.reopen(ctx, billing_project))


@projects_router.delete("/{billing_project}")
async def delete(billing_project: str, ctx: Context, _admin: AdminUser) -> BillingProjectStatus:
    """Only a closed project without running batches (409 otherwise); its spend stays in reports."""
    return _status(await ops.delete(ctx, billing_project))


@projects_router.put("/{billing_project}/limit")
async def edit_limit(
    billing_project: str, body: SpendLimit, ctx: Context, _admin: AdminUser
) -> BillingProjectStatus:
    """Set the spend limit (null removes it). Reaching it cancels the project's running batches."""
    return _status(await ops.set_limit(ctx, billing_project, ops.parse_limit(body.limit)))


@projects_router.delete("/{billing_project}/limit")
async def remove_limit(billing_project: str, ctx: Context, _admin: AdminUser) -> BillingProjectStatus:
    return _status(await ops.set_limit(ctx, billing_project, None))


def _day(value: str | None, field: str) -> str | None:
    if value is None or value == "":
        return None
    if not _DAY.match(value):
        raise InvalidInput(f"{field}: {value!r} is not a day; use YYYY-MM-DD (UTC)", field=field)
    return value


@report_router.get("/report")
async def spend_report(
    ctx: Context,
    user: CurrentUser,
    by: Literal["project", "user", "day"] = "project",
    since: Annotated[str | None, Query(description="first day, YYYY-MM-DD (UTC)")] = None,
    until: Annotated[str | None, Query(description="last day, YYYY-MM-DD (UTC), inclusive")] = None,
    billing_project: str | None = None,
) -> BillingReport:
    """Spend by project, user or day. Admins see every project; users only the projects they are
    members of (another project is 404)."""
    first, last = _day(since, "since"), _day(until, "until")
    async with ctx.reading() as conn:
        projects: list[str] | None = None
        if billing_project is not None:
            projects = [(await ops.visible_project(conn, billing_project, user)).name]
        elif not user.is_admin:
            mine = await user_store.list_billing_projects(conn, member=user.name, include_deleted=True)
            projects = [p.name for p in mine]
        rows = await ledger.daily_rows(conn, projects=projects, since=first, until=last)
        rates = await ledger.rate_map(conn, {r.resource for r in rows})
    entries = [UsageEntry(r.billing_project, r.user, r.day, r.resource, r.usage) for r in rows]
    lines = report(entries, by, rates)
    return BillingReport(
        by=by, since=first, until=last, currency=ctx.settings.billing.currency,
        total=float(sum((line.cost for line in lines), start=0)),
        rows=[BillingReportLine(key=line.key, cost=float(line.cost), cost_breakdown=wire(line.lines))
              for line in lines],
    )


@report_router.get("/rates")
async def rates(ctx: Context, _user: CurrentUser) -> dict[str, Any]:
    """Every rate version the ledger has used (currency per unit-hour), newest version last."""
    async with ctx.reading() as conn:
        versions = await ledger.load_rates(conn)
    return {
        "currency": ctx.settings.billing.currency,
        "accrual_interval": ctx.settings.billing.accrual_interval,
        "rates": [
            {"resource": v.name, "rate": v.rate, "unit": f"{ctx.settings.billing.currency} per "
             f"{RATE_UNITS[kind_of(v.resource)]}", "time_effective": v.time_effective}
            for v in versions
        ],
    }


router = APIRouter()
router.include_router(projects_router)
router.include_router(report_router)
