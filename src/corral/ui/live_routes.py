"""Server-sent events for open batch and job pages, fed by the BatchFeed (never by polling the store).

Events: `summary` (the batch header's HTML), `jobs` (ids of jobs that changed, comma-separated, or `*`),
`done` (the batch is complete: the page closes the stream).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import Response, StreamingResponse

from corral.api.context import ApiContext, Context
from corral.store.users import User
from corral.ui.auth import page_user
from corral.ui.batch_pages import batch_context, summary_html
from corral.ui.live import BatchFeed, BatchUpdate, Renderer
from corral.ui.routing import UiRoute

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)
KEEPALIVE_SECONDS = 15.0


def sse(event: str, data: str) -> bytes:
    lines = data.splitlines() or [""]
    return (f"event: {event}\n" + "".join(f"data: {line}\n" for line in lines) + "\n").encode()


def feed_of(request: Request) -> BatchFeed:
    feed: BatchFeed = request.app.state.ui_feed
    return feed


@router.get("/batches/{batch_id}/events")
async def batch_events(request: Request, batch_id: int, ctx: Context) -> Response:
    user = await page_user(request, ctx)
    context = await batch_context(ctx, user, batch_id)  # 404 for a batch the user may not see
    feed = feed_of(request)

    async def stream() -> AsyncIterator[bytes]:
        async with feed.subscribe(batch_id) as sub:
            yield b"retry: 2000\n\n"
            if context["batch"].complete:
                yield sse("done", "complete")
                return
            while True:
                try:
                    await asyncio.wait_for(sub.ready.wait(), KEEPALIVE_SECONDS)
                except TimeoutError:
                    yield b": keepalive\n\n"
                    continue
                if feed.closed:
                    return
                update, jobs = sub.take()
                if update is None:
                    continue
                yield sse("summary", update.summary_html)
                yield sse("jobs", "*" if jobs is None else ",".join(str(j) for j in sorted(jobs)))
                if update.complete:
                    yield sse("done", "complete")
                    return

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


def make_renderer(ctx: ApiContext) -> Renderer:
    """The feed's renderer: one read of the batch for all its open pages (as an admin: access was
    checked when each page subscribed)."""
    system = User("corral-ui-live", True)

    async def render(batch_id: int) -> BatchUpdate | None:
        try:
            context = await batch_context(ctx, system, batch_id)
        except Exception:
            return None
        return BatchUpdate(summary_html(context), bool(context["batch"].complete))

    return render
