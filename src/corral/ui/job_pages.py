"""/ui/batches/{id}/jobs/{job_id}: state and reason, steps and logs, attempts, usage plot, spec."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, PlainTextResponse, Response

from corral.api.context import Context
from corral.api.routes import jobs as api_jobs
from corral.errors import InvalidInput, NotFound
from corral.store import usage as usage_store
from corral.store.logs import STEPS, existing_log_path
from corral.ui.auth import page_user
from corral.ui.render import page, render_text
from corral.ui.routing import UiRoute
from corral.ui.words import state_reason

router = APIRouter(
    prefix="/ui/batches/{batch_id}/jobs/{job_id}", route_class=UiRoute, include_in_schema=False
)
LOG_PREVIEW_BYTES = 256 * 1024  # the page shows a log's last 256 KiB; the download link has all of it
LOG_CHUNK_BYTES = 256 * 1024


def _log_file(log_dir: Path, batch_id: int, job_id: int, attempt_id: int | None, step: str) -> Path | None:
    """Where the log is (a stat or two: run in a thread)."""
    if attempt_id is None:
        return None
    return existing_log_path(log_dir, batch_id, job_id, attempt_id, step)


def _tail(
    log_dir: Path, batch_id: int, job_id: int, attempt_id: int | None, step: str, limit: int
) -> tuple[str, int, bool]:
    """The log's (text of the last `limit` bytes, file size, cut): finds the file and reads it, blocking
    (one thread hop)."""
    path = _log_file(log_dir, batch_id, job_id, attempt_id, step)
    if path is None:
        return "", 0, False
    try:
        with path.open("rb") as f:
            f.seek(0, 2)
            total = f.tell()
            f.seek(max(0, total - limit))
            data = f.read(limit)
    except FileNotFoundError:
        return "", 0, False
    return data.decode("utf-8", errors="replace"), total, total > limit


async def _job_and_attempts(
    request: Request, ctx: Context, batch_id: int, job_id: int
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Exactly what the API returns for the job and its attempts (same access rules, same redaction)."""
    user = await page_user(request, ctx)
    job = await api_jobs.get_job(batch_id, job_id, ctx, user)
    attempts = await api_jobs.get_attempts(batch_id, job_id, ctx, user)
    return job.model_dump(), [a.model_dump() for a in attempts]


@router.get("", response_class=HTMLResponse)
async def job_page(request: Request, batch_id: int, job_id: int, ctx: Context) -> Response:
    job, attempts = await _job_and_attempts(request, ctx, batch_id, job_id)
    latest = int(attempts[-1]["attempt_id"]) if attempts else None
    logs = {}
    for step in STEPS:
        text, total, cut = await asyncio.to_thread(
            _tail, ctx.settings.log_dir, batch_id, job_id, latest, step, LOG_PREVIEW_BYTES
        )
        logs[step] = {"text": text, "size": total, "cut": cut}
    return page(
        request,
        "job.html",
        job=job,
        attempts=attempts,
        reason=state_reason(job),
        logs=logs,
        latest_attempt=latest,
        steps=STEPS,
        live=job["state"] in ("Pending", "Ready", "Running"),
        fragment=render_text("job_state.html", job=job, attempts=attempts, reason=state_reason(job)),
    )


@router.get("/state", response_class=HTMLResponse)
async def job_state_fragment(request: Request, batch_id: int, job_id: int, ctx: Context) -> Response:
    """State, reason and attempts: what a live update swaps in."""
    job, attempts = await _job_and_attempts(request, ctx, batch_id, job_id)
    return HTMLResponse(
        render_text("job_state.html", job=job, attempts=attempts, reason=state_reason(job)),
        headers={"X-Job-State": job["state"]},
    )


def _check_step(step: str) -> None:
    if step not in STEPS:
        raise InvalidInput(f"step: {step!r} is not a step; use one of {', '.join(STEPS)}", field="step")


@router.get("/log/{step}", response_class=PlainTextResponse)
async def log_chunk(
    request: Request,
    batch_id: int,
    job_id: int,
    step: str,
    ctx: Context,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    """The log from byte `offset` (at most 256 KiB); X-Log-Size says how long the log is now."""
    _check_step(step)
    _, attempts = await _job_and_attempts(request, ctx, batch_id, job_id)
    latest = int(attempts[-1]["attempt_id"]) if attempts else None

    def read() -> tuple[bytes, int]:  # finding the file and reading it: one thread hop
        path = _log_file(ctx.settings.log_dir, batch_id, job_id, latest, step)
        if path is None:
            return b"", 0
        try:
            with path.open("rb") as f:
                f.seek(0, 2)
                total = f.tell()
                if offset >= total:
                    return b"", total
                f.seek(offset)
                return f.read(LOG_CHUNK_BYTES), total
        except FileNotFoundError:
            return b"", 0

    data, total = await asyncio.to_thread(read)
    return PlainTextResponse(
        data.decode("utf-8", errors="replace"),
        headers={"X-Log-Size": str(total), "X-Log-End": str(offset + len(data)), "Cache-Control": "no-store"},
    )


@router.get("/log/{step}/download")
async def log_download(request: Request, batch_id: int, job_id: int, step: str, ctx: Context) -> Response:
    _check_step(step)
    _, attempts = await _job_and_attempts(request, ctx, batch_id, job_id)
    latest = int(attempts[-1]["attempt_id"]) if attempts else None
    path = await asyncio.to_thread(_log_file, ctx.settings.log_dir, batch_id, job_id, latest, step)
    if path is None or not path.is_file():
        raise NotFound(f"step: job {job_id} of batch {batch_id} has no {step} log yet", field="step")
    return FileResponse(
        path,
        media_type="text/plain; charset=utf-8",
        filename=f"batch-{batch_id}-job-{job_id}-attempt-{latest}-{step}.log",
    )


@router.get("/usage")
async def usage(
    request: Request, batch_id: int, job_id: int, ctx: Context, attempt: int | None = None
) -> JSONResponse:
    """The attempt's cpu (cores) and memory (bytes) over time, with the job's limits (uPlot columns)."""
    job, attempts = await _job_and_attempts(request, ctx, batch_id, job_id)
    ids = [int(a["attempt_id"]) for a in attempts]
    attempt_id = attempt if attempt is not None else (ids[-1] if ids else None)
    if attempt_id is not None and attempt_id not in ids:
        raise NotFound(f"attempt: job {job_id} has no attempt {attempt_id}", field="attempt")
    samples: list[usage_store.UsageSample] = []
    if attempt_id is not None:
        async with ctx.reading() as conn:
            samples = await usage_store.attempt_series(conn, batch_id, job_id, attempt_id)
    spec = job.get("spec") or {}
    return JSONResponse(
        {
            "attempt_id": attempt_id,
            "time": [s.time for s in samples],
            "cpu_cores": [s.cpu_mcpu / 1000 for s in samples],
            "memory_bytes": [s.memory_bytes for s in samples],
            "cpu_limit_cores": (spec.get("cores_mcpu") or 0) / 1000,
            "memory_limit_bytes": spec.get("memory_bytes") or 0,
        }
    )
