"""/ui/sessions and /ui/sessions/{ref}: benchmark sessions, their progress (live while the batch runs)
and their results per cell, read the way the API and `corral bench` read them."""

from __future__ import annotations

import csv
import io
import json
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse, Response

from corral.api.access import visible_batch
from corral.api.context import ApiContext, Context
from corral.api.convert import job_status
from corral.api.routes import bench as api_bench
from corral.api.schemas import JobStatus
from corral.errors import CorralError, NotFound
from corral.store import bench as bench_store
from corral.store import jobs_read, ui_sessions
from corral.store.bench import SessionRecord
from corral.store.users import User
from corral.ui.auth import page_user
from corral.ui.render import page, render_text
from corral.ui.routing import UiRoute

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)
SESSIONS_PER_PAGE = 50
MAX_JOBS = 2000  # a session's batch: services + clients x cells x repetitions
RESULT_COLUMNS = ("n", "failures", "throughput", "p50_ms", "p90_ms", "p99_ms")
DONE = ("Success", "Failed", "Error", "Cancelled")


@router.get("/sessions", response_class=HTMLResponse)
async def sessions_page(
    request: Request,
    ctx: Context,
    before_id: int | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = SESSIONS_PER_PAGE,
) -> Response:
    """Newest first: the viewer's sessions (an admin's: everyone's, as the API lists them)."""
    user = await page_user(request, ctx)
    async with ctx.reading() as conn:
        found = await ui_sessions.sessions_page(
            conn, None if user.is_admin else user.name, before_id=before_id, limit=limit
        )
    next_url = f"/ui/sessions?before_id={found[-1].id}&limit={limit}" if len(found) == limit else None
    return page(request, "sessions.html", sessions=found, next_url=next_url, paged=before_id is not None)


async def _session(ctx: ApiContext, user: User, ref: str) -> SessionRecord:
    """The API's look-up (id or newest of that name; another user's session is a 404)."""
    return await api_bench._session(ctx, user, ref)


def _cells(session: SessionRecord) -> list[dict[str, Any]]:
    """The recipe's matrix cells (id and parameters), as the runner expanded them."""
    from corral.sessions.recipe import expand_matrix, parse_recipe

    try:
        return [{"id": c.id, "params": c.params} for c in expand_matrix(parse_recipe(session.recipe))]
    except CorralError:
        manifest_cells = (session.manifest or {}).get("cells") or []
        return [{"id": c.get("id"), "params": {**c.get("service", {}), **c.get("client", {})}}
                for c in manifest_cells if isinstance(c, dict)]


async def progress_context(ctx: ApiContext, user: User, session: SessionRecord) -> dict[str, Any]:
    """Services (state, endpoint, readiness), clients done per cell and the cells running now, from the
    session's batch jobs as the API returns them."""
    services: list[JobStatus] = []
    clients: list[JobStatus] = []
    batch = None
    truncated = False
    if session.batch_id is not None:
        async with ctx.reading() as conn:
            try:
                batch = await visible_batch(conn, session.batch_id, user)
            except NotFound:
                batch = None
            if batch is not None:
                records = await jobs_read.list_jobs(conn, session.batch_id, limit=MAX_JOBS)
                truncated = len(records) == MAX_JOBS
                for record in records:
                    job = job_status(record, batch.billing_project, {})
                    role = (job.attributes or {}).get("bench_role")
                    if role == "service" or (role is None and (job.name or "").startswith("svc-")):
                        services.append(job)
                    elif role == "client":
                        clients.append(job)
    per_cell: dict[str, dict[str, int]] = {}
    running_cells: set[str] = set()
    for job in clients:
        cell = str((job.attributes or {}).get("bench_cell", ""))
        counts = per_cell.setdefault(cell, {"done": 0, "running": 0, "total": 0, "failed": 0})
        counts["total"] += 1
        if job.state in DONE:
            counts["done"] += 1
            counts["failed"] += job.state != "Success"
        elif job.state == "Running":
            counts["running"] += 1
            running_cells.add(cell)
    return {
        "session": session,
        "batch": batch,
        "services": services,
        "per_cell": per_cell,
        "running_cells": sorted(running_cells),
        "clients_done": sum(c["done"] for c in per_cell.values()),
        "clients_total": len(clients),
        "truncated": truncated,
        "complete": batch is None or batch.time_completed is not None,
    }


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


def results_context(session: SessionRecord, rows: list[dict[str, Any]],
                    baseline_rows: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Per (cell, client): the report's table (mean ± 95% CI over repetitions) and the verdicts."""
    from corral.sessions.recipe import parse_recipe
    from corral.sessions.verdicts import failed, reference_verdicts, slo_verdicts, stats_from_rows

    stats, params = stats_from_rows(rows)
    table = []
    for (cell, client), metrics in sorted(stats.items()):
        columns = {}
        for name in RESULT_COLUMNS:
            stat = metrics.get(name)
            columns[name] = {
                "mean": None if stat is None else stat.mean,
                "text": "—" if stat is None else _fmt(stat.mean),
                "ci": "" if stat is None or stat.ci95 is None else _fmt(stat.ci95),
                "unit": "" if stat is None else stat.unit,
                "reps": "" if stat is None else f"{len(stat.values)}/{stat.n_repetitions}",
            }
        others = [
            {"metric": m, "mean": _fmt(s.mean), "ci": _fmt(s.ci95), "unit": s.unit}
            for m, s in sorted(metrics.items()) if m not in RESULT_COLUMNS and m != "failed"
        ]
        table.append({
            "cell": cell, "client": client, "params": json.dumps(params.get(cell, {}), sort_keys=True),
            "failed": failed(metrics), "columns": columns, "others": others,
        })
    verdicts: list[Any] = []
    try:
        recipe = parse_recipe(session.recipe)
        baseline = stats_from_rows(baseline_rows) if baseline_rows else None
        verdicts = slo_verdicts(recipe, stats) + reference_verdicts(recipe, stats, params, baseline)
    except CorralError:
        verdicts = []
    return {"results": table, "verdicts": verdicts, "columns": RESULT_COLUMNS, "points": _points(table)}


def _points(table: list[dict[str, Any]]) -> str:
    """The report's latency-against-throughput plot as data: per client, one [throughput, p50, p99]
    (means over repetitions) per cell, sorted by throughput (JSON for the page's script)."""
    by_client: dict[str, list[list[float]]] = {}
    for row in table:
        c = row["columns"]
        t, p50, p99 = (c[k]["mean"] for k in ("throughput", "p50_ms", "p99_ms"))
        if t is not None and p50 is not None:
            by_client.setdefault(row["client"], []).append([t, p50, p99 if p99 is not None else p50])
    return json.dumps({client: sorted(points) for client, points in sorted(by_client.items())})


async def _baseline_rows(ctx: ApiContext, user: User, session: SessionRecord) -> list[dict[str, Any]] | None:
    """The first baseline session a reference names, with the viewer's access (none: no rows)."""
    for ref in session.recipe.get("references") or []:
        name = ref.get("baseline") if isinstance(ref, dict) else None
        if name:
            async with ctx.reading() as conn:
                other = await bench_store.find_session(conn, user.name, str(name), admin=user.is_admin)
                return await bench_store.query_results(conn, other.id) if other else None
    return None


@router.get("/sessions/{ref}", response_class=HTMLResponse)
async def session_page(request: Request, ref: str, ctx: Context) -> Response:
    user = await page_user(request, ctx)
    session = await _session(ctx, user, ref)
    async with ctx.reading() as conn:
        rows = await bench_store.query_results(conn, session.id)
    progress = await progress_context(ctx, user, session)
    return page(
        request,
        "session.html",
        **progress,
        **results_context(session, rows, await _baseline_rows(ctx, user, session)),
        cells=_cells(session),
        progress_html=render_text("session_progress.html", **progress),
        manifest_json=json.dumps(session.manifest, indent=1, sort_keys=True, default=str),
        recipe_json=json.dumps(session.recipe, indent=1, sort_keys=True, default=str),
        ref_q=quote(str(session.id)),
        live=session.state == "running" and not progress["complete"],
    )


@router.get("/sessions/{ref}/progress", response_class=HTMLResponse)
async def session_progress(request: Request, ref: str, ctx: Context) -> Response:
    """The progress fragment the page refetches when its batch's jobs change."""
    user = await page_user(request, ctx)
    session = await _session(ctx, user, ref)
    return HTMLResponse(render_text("session_progress.html", **await progress_context(ctx, user, session)))


@router.get("/sessions/{ref}/results.csv")
async def session_results_csv(request: Request, ref: str, ctx: Context) -> Response:
    """Every stored result row (cell, repetition, client, metric, value, unit, params) as CSV."""
    user = await page_user(request, ctx)
    session = await _session(ctx, user, ref)
    async with ctx.reading() as conn:
        rows = await bench_store.query_results(conn, session.id)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["cell", "repetition", "client", "metric", "value", "unit", "params"])
    for r in rows:
        writer.writerow([r["cell"], r["repetition"], r["client"], r["metric"],
                         "" if r["value"] is None else repr(float(r["value"])), r["unit"],
                         json.dumps(r["params"], sort_keys=True)])
    return Response(
        out.getvalue(),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="session-{session.id}-results.csv"'},
    )
