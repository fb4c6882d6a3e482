"""Jinja2 templates and the filters pages share (durations, sizes, money, times)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape

TEMPLATES = Path(__file__).parent / "templates"


def duration(ms: float | int | None) -> str:
    """Milliseconds in words a reader scans: 850 ms, 12.3 s, 4 min 05 s, 2 h 03 min."""
    if ms is None:
        return ""
    if ms < 1000:
        return f"{int(ms)} ms"
    s = ms / 1000
    if s < 60:
        return f"{s:.1f} s"
    if s < 3600:
        return f"{int(s // 60)} min {int(s % 60):02d} s"
    return f"{int(s // 3600)} h {int(s % 3600 // 60):02d} min"


def seconds(start: float | None, end: float | None) -> str:
    if start is None:
        return ""
    return duration(((end if end is not None else time.time()) - start) * 1000)


def size(n: float | int | None) -> str:
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(value) < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"


def money(x: float | None) -> str:
    if x is None:
        return ""
    if x == 0:
        return "$0.00"
    return f"${x:.4f}" if abs(x) < 0.01 else f"${x:,.2f}"


def when(value: str | float | None) -> str:
    """ISO text or epoch seconds -> 'YYYY-MM-DD HH:MM:SS' UTC."""
    if value is None or value == "":
        return ""
    if isinstance(value, int | float):
        t = datetime.fromtimestamp(value, tz=UTC)
    else:
        t = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return t.strftime("%Y-%m-%d %H:%M:%S")


def epoch(value: str | None) -> float:
    if not value:
        return 0.0
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


def count(n: int | None) -> str:
    """12345 -> '12,345'."""
    return "" if n is None else f"{n:,}"


def corehours(msec_mcpu: int | None) -> str:
    """msec x mcpu -> core-hours with three significant digits."""
    if not msec_mcpu:
        return "0"
    return f"{msec_mcpu / 3.6e9:.3g}"


def cores(mcpu: int | None) -> str:
    if mcpu is None:
        return ""
    return f"{mcpu / 1000:g}"


def make_environment() -> Environment:
    env = Environment(
        loader=FileSystemLoader(TEMPLATES),
        autoescape=select_autoescape(["html"]),
        enable_async=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters.update(
        count=count,
        corehours=corehours,
        epoch=epoch,
        duration=duration,
        size=size,
        money=money,
        when=when,
        cores=cores,
        seconds=seconds,
    )
    return env


ENV = make_environment()


def render_text(name: str, **context: Any) -> str:
    return ENV.get_template(name).render(**context)


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    base = {"request": request, "path": request.url.path, **getattr(request.state, "ui", {})}
    return HTMLResponse(render_text(name, **base, **context), status_code=status_code)
