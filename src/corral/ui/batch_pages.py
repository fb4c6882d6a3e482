"""/ui/batches and /ui/batches/{id}: the list, one batch, its jobs table, cancel and delete."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import urlencode

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from corral.api import submit
from corral.api.access import visible_batch
from corral.api.context import ApiContext, Context
from corral.api.convert import batch_status, job_summary
from corral.api.query import batch_predicate, job_predicate, job_states
from corral.api.routes import batches as api_batches
from corral.api.schemas import BatchStatus
from corral.domain.states import JobState
from corral.errors import InvalidInput
from corral.store import batches as batch_store
from corral.store import jobs_read, ui_billing, ui_sessions, ui_views
from corral.store.users import User
from corral.ui.auth import check_csrf, page_user
from corral.ui.render import page, render_text
from corral.ui.routing import UiRoute

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)
PAGE_SIZES = (25, 50, 100, 200)
ORDERED_STATES = [s.value for s in JobState]


@router.get("")
async def home() -> RedirectResponse:
    return RedirectResponse("/ui/batches", status_code=303)


@router.get("/batches", response_class=HTMLResponse)
async def batches_page(
    request: Request,
    ctx: Context,
    q: str | None = None,
    last_batch_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> Response:
    """Newest first. Without `q` the page shows the viewer's own batches (`user:<me>`); `q=` (empty) is
    every batch the viewer may see."""
    user = await page_user(request, ctx)
    query = f"user:{user.name}" if q is None else q
    error = None
    found: list[BatchStatus] = []
    next_cursor = None
    try:
        predicate = batch_predicate(query)
        async with ctx.reading() as conn:
            records = await batch_store.list_batches(
                conn,
                viewer=None if user.is_admin else user.name,
                last_batch_id=last_batch_id,
                limit=limit,
                predicate=predicate,
            )
        found = [batch_status(b) for b in records]
        next_cursor = records[-1].id if len(records) == limit else None
    except InvalidInput as exc:
        error = exc.message
    next_url = None
    if next_cursor is not None:
        next_url = "/ui/batches?" + urlencode({"q": query, "last_batch_id": next_cursor, "limit": limit})
    return page(
        request,
        "batches.html",
        status_code=400 if error else 200,
        batches=found,
        q=query,
        error=error,
        next_url=next_url,
        first_url="/ui/batches?" + urlencode({"q": query, "limit": limit}),
        paged=last_batch_id is not None,
    )


async def batch_context(ctx: ApiContext, user: User, batch_id: int) -> dict[str, Any]:
    """What the batch header shows (also the live summary fragment): the batch as the API returns it
    (same access rule), its state counts and its billing project's spend."""
    batch = await api_batches.get_batch(batch_id, ctx, user)
    async with ctx.reading() as conn:
        counts = await ui_views.state_counts(conn, batch_id)
        project = await ui_billing.project_spend(conn, batch.billing_project)
    return {"batch": batch, "counts": counts, "project": project, "states": ORDERED_STATES}


def summary_html(context: dict[str, Any]) -> str:
    return render_text("batch_summary.html", **context)


def _jobs_query(state: str | None, q: str | None, limit: int, last_job_id: int | None = None) -> str:
    params: dict[str, Any] = {k: v for k, v in (("state", state), ("q", q)) if v}
    params["limit"] = limit
    if last_job_id is not None:
        params["last_job_id"] = last_job_id
    return urlencode(params)


@dataclass(frozen=True)
class JobsQuery:
    """What a jobs table shows: a state filter, a query, and the page (after `last_job_id`)."""

    state: str | None = None
    q: str | None = None
    last_job_id: int | None = None
    limit: int = 50


def jobs_query(
    state: str | None = None,
    q: str | None = None,
    last_job_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> JobsQuery:
    return JobsQuery(state, q, last_job_id, limit)


JobsQueryParams = Annotated[JobsQuery, Depends(jobs_query)]


def empty_jobs_table(batch_id: int, query: JobsQuery) -> dict[str, Any]:
    """The table's context when its query is invalid: the page still shows, with the error."""
    return {
        "batch_id": batch_id, "jobs": [], "state": query.state or "", "q": query.q or "",
        "limit": query.limit, "timeline": [], "job_ids": "", "table_url": "", "next_url": None,
        "first_url": None, "attempts": {}, "reasons": {},
    }


async def jobs_table_context(ctx: ApiContext, user: User, batch_id: int, query: JobsQuery) -> dict[str, Any]:
    state, q, last_job_id, limit = query.state, query.q, query.last_job_id, query.limit
    states = job_states(state)
    predicate = job_predicate(q)
    async with ctx.reading() as conn:
        record = await visible_batch(conn, batch_id, user)
        found = await jobs_read.list_jobs(
            conn, batch_id, states=states, last_job_id=last_job_id, limit=limit, predicate=predicate
        )
        first = found[0].job_id - 1 if found else (last_job_id or 0)
        bars = await ui_views.timeline(conn, batch_id, after_job_id=first, limit=limit) if found else []
    jobs = [job_summary(j, record.billing_project) for j in found]
    attempts = {j.job_id: j.n_attempts for j in found}
    reasons = {j.job_id: _reason(j.status, j.waiting_reason if j.state == "Ready" else None) for j in found}
    base = f"/ui/batches/{batch_id}"
    next_cursor = found[-1].job_id if len(found) == limit else None
    return {
        "batch_id": batch_id,
        "jobs": jobs,
        "attempts": attempts,
        "reasons": reasons,
        "state": state or "",
        "q": q or "",
        "limit": limit,
        "last_job_id": last_job_id,
        "table_url": f"{base}/jobs-table?{_jobs_query(state, q, limit, last_job_id)}",
        "next_url": f"{base}?{_jobs_query(state, q, limit, next_cursor)}" if next_cursor else None,
        "first_url": f"{base}?{_jobs_query(state, q, limit)}" if last_job_id else None,
        "timeline": timeline_layout(bars, time.time()),
        "job_ids": ",".join(str(j.job_id) for j in found),
    }


def _reason(status: dict[str, Any] | None, waiting_reason: str | None = None) -> str:
    """Why a Ready job waits, or a job's ending in a few words from its last attempt's status."""
    if waiting_reason:
        return f"waiting: {waiting_reason}"
    if not status:
        return ""
    if status.get("reason"):
        return str(status["reason"])
    if status.get("timed_out"):
        return "timed out"
    if status.get("out_of_memory"):
        return "out of memory"
    error = status.get("error")
    return str(error).splitlines()[0][:120] if error else ""


@router.get("/batches/{batch_id}", response_class=HTMLResponse)
async def batch_page(request: Request, batch_id: int, ctx: Context, query: JobsQueryParams) -> Response:
    user = await page_user(request, ctx)
    context = await batch_context(ctx, user, batch_id)
    error = None
    try:
        table = await jobs_table_context(ctx, user, batch_id, query)
    except InvalidInput as exc:
        error = exc.message
        table = empty_jobs_table(batch_id, query)
    attributes = context["batch"].attributes or {}
    async with ctx.reading() as conn:
        dag = await ui_views.dag(conn, batch_id, context["batch"].n_jobs)
        session_id = (
            await ui_sessions.session_of_batch(conn, batch_id, None if user.is_admin else user.name)
            if "bench_session" in attributes
            else None
        )
    return page(
        request,
        "batch.html",
        session_id=session_id,
        sweep=str(attributes["sweep"]) if attributes.get("sweep") else None,
        status_code=400 if error else 200,
        summary=summary_html(context),
        table=table,
        error=error,
        dag=dag_layout(dag) if dag else None,
        batch_id=batch_id,
        **context,
    )


@router.get("/batches/{batch_id}/jobs-table", response_class=HTMLResponse)
async def jobs_table(request: Request, batch_id: int, ctx: Context, query: JobsQueryParams) -> Response:
    """The jobs table alone: what a live update swaps in."""
    user = await page_user(request, ctx)
    table = await jobs_table_context(ctx, user, batch_id, query)
    return HTMLResponse(render_text("jobs_table.html", table=table))


@router.get("/batches/{batch_id}/dag", response_class=HTMLResponse)
async def dag_fragment(request: Request, batch_id: int, ctx: Context) -> Response:
    """The graph alone (batches of at most DAG_MAX_JOBS jobs): what a live update swaps in."""
    user = await page_user(request, ctx)
    async with ctx.reading() as conn:
        record = await visible_batch(conn, batch_id, user)
        dag = await ui_views.dag(conn, batch_id, record.n_jobs)
    if not dag:
        return HTMLResponse("")
    return HTMLResponse(render_text("dag.html", dag=dag_layout(dag), batch_id=batch_id))


@router.post("/batches/{batch_id}/cancel")
async def cancel_batch(request: Request, batch_id: int, ctx: Context) -> Response:
    user = await page_user(request, ctx)
    fields = await check_csrf(request)
    await submit.cancel(ctx, user, batch_id)
    return RedirectResponse(_back(fields, f"/ui/batches/{batch_id}"), status_code=303)


@router.post("/batches/{batch_id}/delete")
async def delete_batch(request: Request, batch_id: int, ctx: Context) -> Response:
    user = await page_user(request, ctx)
    fields = await check_csrf(request)
    await submit.delete(ctx, user, batch_id)
    return RedirectResponse(_back(fields, "/ui/batches"), status_code=303)


def _back(fields: dict[str, str], default: str) -> str:
    target = fields.get("next", "")
    return target if target.startswith("/ui/") and not target.startswith("//") else default


def timeline_layout(bars: list[ui_views.TimelineBar], now: float) -> dict[str, Any] | None:
    """Bars scaled to a 1000-wide SVG: one row per attempt, running ones up to now."""
    if not bars:
        return None
    t0 = min(b.start for b in bars)
    t1 = max(b.end if b.end is not None else now for b in bars)
    span = max(t1 - t0, 1e-3)
    rows = []
    for i, b in enumerate(bars):
        end = b.end if b.end is not None else now
        rows.append(
            {
                "job_id": b.job_id,
                "attempt_id": b.attempt_id,
                "name": b.name,
                "state": b.state,
                "x": round(1000 * (b.start - t0) / span, 1),
                "y": 2 + 14 * i,
                "w": round(max(2.0, 1000 * (end - b.start) / span), 1),
                "ms": (end - b.start) * 1000,
                "running": b.end is None,
            }
        )
    return {"bars": rows, "span_ms": span * 1000, "height": 14 * len(rows) + 4}


# ---------------------------------------------------------------- DAG layout (small batches)


def dag_layout(nodes: list[ui_views.DagNode]) -> dict[str, Any]:
    """Layers by longest path from a root; positions for an SVG drawn by the template."""
    depth: dict[int, int] = {}
    by_id = {n.job_id: n for n in nodes}
    for node in nodes:  # parents have smaller ids than their children
        depth[node.job_id] = 1 + max((depth.get(p, 0) for p in node.parents if p in by_id), default=-1)
    layers: dict[int, list[int]] = {}
    for node in nodes:
        layers.setdefault(depth[node.job_id], []).append(node.job_id)
    dx, dy, w, h = 150, 34, 120, 24
    pos: dict[int, tuple[int, int]] = {}
    for d, ids in layers.items():
        for i, job_id in enumerate(ids):
            pos[job_id] = (10 + d * dx, 10 + i * dy)
    edges = [
        (pos[p][0] + w, pos[p][1] + h // 2, pos[n.job_id][0], pos[n.job_id][1] + h // 2)
        for n in nodes
        for p in n.parents
        if p in pos
    ]
    width = 20 + (max(layers) + 1) * dx if layers else 0
    height = 20 + max((len(ids) for ids in layers.values()), default=0) * dy
    return {
        "nodes": [(by_id[j], x, y) for j, (x, y) in pos.items()],
        "edges": edges,
        "w": w,
        "h": h,
        "width": width,
        "height": height,
    }
