"""/ui/sweeps and /ui/sweeps/{name}: parameter sweeps, derived as the sweeps library derives them — from
the batches tagged `sweep=<name>` and their `chunk-<index>-<key>` jobs (the newest job of a chunk, newest
batch first, decides its state); rows and merged chunks come from the sweep's files when they live in
the server's own `corral-local` bucket (the server reads no other storage)."""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote, unquote, urlencode, urlparse

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import HTMLResponse, Response

from corral.api.context import ApiContext, Context
from corral.api.convert import batch_status
from corral.errors import NotFound
from corral.store import ui_sweeps
from corral.store.ui_sweeps import ChunkJobRow
from corral.store.users import User
from corral.ui.auth import page_user
from corral.ui.render import page, render_text
from corral.ui.routing import UiRoute

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)
CHUNKS_PER_PAGE = 200
LIVE_STATES = ("Pending", "Ready", "Creating", "Running")  # corral.sweeps.submit.LIVE_STATES
GROUPS = ("merged", "succeeded", "running", "failed", "waiting")
_VERSION = re.compile(r"^[0-9a-zA-Z_-]{1,128}$")


@dataclass
class ChunkView:
    index: int
    key: str
    jobs: list[ChunkJobRow] = field(default_factory=list)  # newest first
    start: int | None = None
    n_rows: int | None = None
    merged: bool = False

    @property
    def newest(self) -> ChunkJobRow | None:
        return self.jobs[0] if self.jobs else None

    @property
    def group(self) -> str:
        """merged | succeeded (result not merged yet) | running | failed | waiting (no job yet)."""
        if self.merged:
            return "merged"
        job = self.newest
        if job is None:
            return "waiting"
        if job.state in LIVE_STATES:
            return "running"
        return "succeeded" if job.state == "Success" else "failed"

    @property
    def attempts(self) -> int:
        """Attempts over every job the chunk had (reruns submit a new job)."""
        return sum(j.n_attempts for j in self.jobs)

    @property
    def rows(self) -> str:
        if self.start is None or self.n_rows is None:
            return ""
        return f"{self.start}-{self.start + self.n_rows - 1}"


def chunk_of(name: str) -> tuple[int, str] | None:
    """`chunk-<index>-<key>` -> (index, key) (corral.sweeps.submit.job_name)."""
    if not name.startswith(ui_sweeps.CHUNK_PREFIX):
        return None
    index, _, key = name[len(ui_sweeps.CHUNK_PREFIX):].rpartition("-")
    return (int(index), key) if index.isdigit() and key else None


@router.get("/sweeps", response_class=HTMLResponse)
async def sweeps_page(request: Request, ctx: Context) -> Response:
    user = await page_user(request, ctx)
    async with ctx.reading() as conn:
        found = await ui_sweeps.sweep_summaries(conn, None if user.is_admin else user.name)
    return page(request, "sweeps.html", sweeps=found, quote=quote)


def _local_files(home: Path, root: str, name: str, version: str) -> tuple[Path, Path] | None:
    """(version manifest, merged folder) when the sweep's storage is the server's own bucket."""
    from corral.sweeps.storage import local_bucket_url

    bucket = Path(unquote(urlparse(local_bucket_url(home)).path))
    parsed = urlparse(root)
    if parsed.scheme != "file" or not _VERSION.match(version) or "/" in name or name in ("", ".", ".."):
        return None
    base = Path(unquote(parsed.path)).resolve() / name
    if not base.is_relative_to(bucket.resolve()):
        return None
    return base / "versions" / f"{version}.json", base / "merged" / version


def _read_files(files: tuple[Path, Path] | None) -> tuple[list[list[Any]] | None, set[str]]:
    """The version's chunks [[index, key, start, n_rows], ...] and the merged chunk keys (the parts'
    footers, as corral.sweeps.merge reads them); blocking, run in a thread."""
    if files is None:
        return None, set()
    import json

    from corral.sweeps import merge

    manifest, merged = files
    chunks = None
    try:
        chunks = list(json.loads(manifest.read_text())["chunks"])
    except (OSError, ValueError, KeyError, TypeError):
        chunks = None
    keys: set[str] = set()
    if merged.is_dir():
        try:
            keys = set(merge.merged_state(merged.as_uri()).chunks)
        except Exception:  # a part being written or damaged: show job states only
            keys = set()
    return chunks, keys


@dataclass(frozen=True)
class ChunksQuery:
    """Which chunks a sweep page lists: one group (done, failed, ...) and the page after chunk `after`."""

    group: str | None = None
    after: int | None = None
    limit: int = CHUNKS_PER_PAGE


def chunks_query(
    group: str | None = None,
    after: int | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = CHUNKS_PER_PAGE,
) -> ChunksQuery:
    return ChunksQuery(group, after, limit)


ChunksQueryParams = Annotated[ChunksQuery, Depends(chunks_query)]


async def sweep_context(ctx: ApiContext, user: User, name: str, query: ChunksQuery) -> dict[str, Any]:
    group, after, limit = query.group, query.after, query.limit
    async with ctx.reading() as conn:
        records = await ui_sweeps.sweep_batches(conn, name, None if user.is_admin else user.name)
        if not records:
            raise NotFound(f"name: no sweep {name!r} among the batches you can see", field="name")
        rows = await ui_sweeps.chunk_jobs(conn, [b.id for b in records])
    newest = records[0]
    version = str(newest.attributes.get("sweep_version", ""))
    root = str(newest.attributes.get("sweep_storage", ""))
    chunks: dict[str, ChunkView] = {}
    for row in rows:  # newest batch first
        parsed = chunk_of(row.name)
        if parsed is not None:
            chunks.setdefault(parsed[1], ChunkView(parsed[0], parsed[1])).jobs.append(row)
    files = _local_files(ctx.settings.home, root, name, version) if root and version else None
    listed, merged = await asyncio.to_thread(_read_files, files)
    if listed is not None:  # the version's chunks, with their rows; jobs of other versions left out
        chunks = {
            str(key): ChunkView(int(index), str(key), chunks[key].jobs if key in chunks else [],
                                int(start), int(n_rows))
            for index, key, start, n_rows in listed
        }
    for key in merged:
        if key in chunks:
            chunks[key].merged = True
    ordered = sorted(chunks.values(), key=lambda c: c.index)
    counts = {g: 0 for g in GROUPS}
    for c in ordered:
        counts[c.group] += 1
    shown = [c for c in ordered if (not group or c.group == group) and (after is None or c.index > after)]
    page_rows = shown[:limit]
    quoted = quote(name, safe="")
    params: dict[str, Any] = {"limit": limit}
    if group:
        params["group"] = group
    next_url = None
    if len(shown) > limit:
        next_url = f"/ui/sweeps/{quoted}?" + urlencode({**params, "after": page_rows[-1].index})
    here = {**params, **({"after": after} if after is not None else {})}
    from corral.sweeps.storage import SweepLayout

    layout = SweepLayout(root, name) if root else None
    live = [b.id for b in records if b.time_completed is None and not b.cancelled]
    return {
        "sweep_name": name,
        "quoted": quoted,
        "version": version,
        "storage": layout.base if layout else "",
        "dataset": layout.merged(version) if layout and version else "",
        "batches": [batch_status(b) for b in records],
        "chunks": page_rows,
        "counts": counts,
        "n_chunks": len(ordered),
        "n_rows": sum(c.n_rows or 0 for c in ordered) if listed is not None else None,
        "from_files": listed is not None,
        "group": group or "",
        "groups": GROUPS,
        "next_url": next_url,
        "paged": after is not None,
        "fragment_url": f"/ui/sweeps/{quoted}/chunks?" + urlencode(here),
        "live_batch": live[0] if live else None,  # the newest running batch: its stream drives updates
    }


@router.get("/sweeps/{name}", response_class=HTMLResponse)
async def sweep_page(request: Request, name: str, ctx: Context, query: ChunksQueryParams) -> Response:
    user = await page_user(request, ctx)
    context = await sweep_context(ctx, user, name, query)
    return page(request, "sweep.html", **context)


@router.get("/sweeps/{name}/chunks", response_class=HTMLResponse)
async def sweep_chunks(request: Request, name: str, ctx: Context, query: ChunksQueryParams) -> Response:
    """The counts and chunks table alone: what the page refetches when the sweep's jobs change."""
    user = await page_user(request, ctx)
    context = await sweep_context(ctx, user, name, query)
    return HTMLResponse(render_text("sweep_chunks.html", **context))
