"""/ui/pools (admins: collections, instances, fair-share view) and /ui/billing (spend, limits, CSV)."""

from __future__ import annotations

import csv
import io
import time
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from corral.api.context import Context
from corral.api.routes import billing as api_billing
from corral.errors import Forbidden, InvalidInput
from corral.store import ui_billing, ui_views
from corral.ui.auth import check_csrf, page_user
from corral.ui.render import page
from corral.ui.routing import UiRoute

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)
INSTANCE_STATES = ("pending", "active", "inactive", "deleted")
INSTANCES_PER_PAGE = 100
NO_CAPACITY = ui_views.Capacity(0, 0, 0, 0)


@router.get("/pools", response_class=HTMLResponse)
async def pools_page(
    request: Request,
    ctx: Context,
    deleted: bool = False,
    before_time: float | None = None,
    before_name: str | None = None,
) -> Response:
    """Collections, the fair-share view and a page of instances (newest first; `before_*` pages on)."""
    user = await page_user(request, ctx)
    if not user.is_admin:
        raise Forbidden(f"user {user.name!r} is not an admin; the pools page is for admins only")
    before = (before_time, before_name or "") if before_time is not None else None
    async with ctx.reading() as conn:
        collections = await ui_views.collections(conn)
        instances = await ui_views.instances_view(
            conn, include_deleted=deleted, limit=INSTANCES_PER_PAGE, before=before
        )
        counts = await ui_views.instance_counts(conn)
        capacity = await ui_views.collection_capacity(conn)
        shares = await ui_views.user_cores(conn)
    names = sorted({c.name for c in collections} | set(capacity) | {c for c, _ in counts})
    by_name = {c.name: c for c in collections}
    summary: list[dict[str, Any]] = []
    for name in names:
        cap = capacity.get(name, NO_CAPACITY)
        summary.append(
            {
                "name": name,
                "provider": by_name[name].provider if name in by_name else "",
                "kind": by_name[name].kind if name in by_name else "",
                "counts": {s: counts.get((name, s), 0) for s in INSTANCE_STATES},
                "total_mcpu": cap.total_mcpu,
                "free_mcpu": cap.free_mcpu,
                "total_gpus": cap.total_gpus,
                "free_gpus": cap.free_gpus,
            }
        )
    next_url = None
    if len(instances) == INSTANCES_PER_PAGE:
        last = instances[-1]
        params = {"before_time": repr(last.time_created), "before_name": last.name}
        if deleted:
            params["deleted"] = "true"
        next_url = "/ui/pools?" + urlencode(params)
    return page(
        request,
        "pools.html",
        collections=summary,
        instances=instances,
        shares=shares,
        now=time.time(),
        show_deleted=deleted,
        states=INSTANCE_STATES,
        next_url=next_url,
        paged=before is not None,
    )


def _day(value: str | None, default: datetime, field: str) -> datetime:
    if not value:
        return default
    try:
        return datetime.strptime(value, "%Y-%m-%d").replace(tzinfo=UTC)
    except ValueError:
        raise InvalidInput(f"{field}: {value!r} is not a date; use YYYY-MM-DD", field=field) from None


async def _spend(request: Request, ctx: Context, start: str | None, end: str | None) -> dict[str, Any]:
    user = await page_user(request, ctx)
    today = datetime.now(tz=UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    first = _day(start, today - timedelta(days=30), "start")
    last = _day(end, today, "end")
    if last < first:
        raise InvalidInput(
            "end: the range ends before it starts; pick an end on or after the start", field="end"
        )
    viewer = None if user.is_admin else user.name
    since, until = first.strftime("%Y-%m-%d"), last.strftime("%Y-%m-%d")
    async with ctx.reading() as conn:
        visible = await ui_billing.visible_projects(conn, viewer)
        spend = await ui_billing.spend(conn, since=since, until=until, projects=visible)
        projects = await ui_billing.projects_spend(conn, member=viewer)
        members = await ui_billing.members(conn) if user.is_admin else {}
    return {
        "spend": spend,
        "projects": projects,
        "members": members,
        "is_admin": user.is_admin,
        "start": since,
        "end": until,
        "currency": ctx.settings.billing.currency,
    }


@router.get("/billing", response_class=HTMLResponse)
async def billing_page(
    request: Request, ctx: Context, start: str | None = None, end: str | None = None
) -> Response:
    return page(request, "billing.html", **await _spend(request, ctx, start, end))


@router.get("/billing.csv")
async def billing_csv(
    request: Request, ctx: Context, start: str | None = None, end: str | None = None
) -> Response:
    data = await _spend(request, ctx, start, end)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["day", "billing_project", "user", "resource", "usage", "cost"])
    for row in data["spend"].rows:
        for line in row.lines:
            writer.writerow([row.day, row.billing_project, row.user, line.resource, line.usage, line.cost])
    name = f"corral-spend-{data['start']}-{data['end']}.csv"
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{name}"'},
    )


@router.post("/billing/{billing_project}/members")
async def change_member(request: Request, billing_project: str, ctx: Context) -> Response:
    """Admins add (`user`) or remove (`remove`) a member, through the API's own routes."""
    user = await page_user(request, ctx)
    fields = await check_csrf(request)
    if not user.is_admin:
        raise Forbidden(f"user {user.name!r} is not an admin; only admins change members")
    if fields.get("remove"):
        await api_billing.remove_member(billing_project, fields["remove"].strip(), ctx, user)
    else:
        member = fields.get("user", "").strip()
        if not member:
            raise InvalidInput("user: name the user to add", field="user")
        await api_billing.add_member(billing_project, member, ctx, user)
    return RedirectResponse("/ui/billing", status_code=303)
