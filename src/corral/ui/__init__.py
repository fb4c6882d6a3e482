"""Web pages under /ui: server-rendered (Jinja2), htmx for partial and live updates, vendored assets."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from corral.ui.live import BatchFeed

STATIC = Path(__file__).parent / "static"


def mount_ui(app: FastAPI) -> BatchFeed:
    """Add the pages, their static files and the live-update feed to the API app; returns the feed the
    driver publishes to (also at app.state.ui_feed)."""
    from corral.ui import (
        admin_pages,
        batch_pages,
        bench_pages,
        job_pages,
        live_routes,
        session_pages,
        sweep_pages,
    )

    feed = BatchFeed()
    feed.render = live_routes.make_renderer(app.state.corral)
    app.state.ui_feed = feed
    for module in (session_pages, batch_pages, job_pages, admin_pages, bench_pages, sweep_pages, live_routes):
        app.include_router(module.router)
    app.mount("/ui/static", StaticFiles(directory=STATIC), name="ui-static")
    return feed
