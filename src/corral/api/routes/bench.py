"""Benchmark session routes: register a session (its recipe validated: 400 naming the field), list,
status, results by cell and metric. A session is one batch plus its results; the runner
(corral.sessions.runner) submits the batch and stores the results it reads from the client jobs."""

from __future__ import annotations

import json
import time
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from corral.api.auth import CurrentUser
from corral.api.context import Context
from corral.errors import InvalidInput, NotFound
from corral.store import bench as store

router = APIRouter(prefix="/api/v1/bench", tags=["bench"])


class SessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    name: str = Field(min_length=1, max_length=200)
    recipe: dict[str, Any]
    batch_id: int | None = Field(default=None, ge=1, le=2**62)
    manifest: dict[str, Any] | None = None


class ResultRow(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    cell: str = Field(min_length=1, max_length=200)
    repetition: int = Field(ge=1, le=1000)
    client: str = Field(min_length=1, max_length=100)
    metric: str = Field(min_length=1, max_length=100)
    value: float | None
    unit: str = Field(max_length=20)
    params: dict[str, Any] = Field(default_factory=dict)


class ResultsPut(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    state: str = Field(pattern=r"^(running|success|failure|cancelled)$")
    rows: list[ResultRow] = Field(default_factory=list, max_length=200_000)
    manifest: dict[str, Any] | None = None


def _storable(value: Any, field: str) -> None:
    """Text PostgreSQL can keep: no NUL characters anywhere (a 400, not a database error)."""
    if "\\u0000" in json.dumps(value):
        raise InvalidInput(f"{field}: contains a NUL character", field=field)


def validate_recipe(raw: dict[str, Any]) -> Any:
    from corral.sessions.plan import check_types
    from corral.sessions.recipe import parse_recipe

    recipe = parse_recipe(raw)
    check_types(recipe)
    return recipe


async def _session(ctx: Context, user: Any, ref: str) -> store.SessionRecord:
    ref = _ref(ref)
    async with ctx.reading() as conn:
        found = await store.find_session(conn, user.name, ref, admin=user.is_admin)
    if found is None:
        raise NotFound(f"no benchmark session {ref!r}; `corral bench list` shows yours")
    return found


@router.post("/sessions")
async def create_session(body: SessionCreate, ctx: Context, user: CurrentUser) -> dict[str, Any]:
    _storable(body.model_dump(), "body")
    recipe = validate_recipe(body.recipe)
    async with ctx.writing() as conn:
        session_id = await store.create_session(
            conn,
            name=body.name,
            user=user.name,
            batch_id=body.batch_id,
            recipe=recipe.model_dump(mode="json"),
            recipe_hash=recipe.digest(),
            manifest=body.manifest,
            now=time.time(),
        )
    return {"id": session_id, "recipe_hash": recipe.digest()}


@router.post("/recipes/validate")
async def check_recipe(body: dict[str, Any], user: CurrentUser) -> dict[str, Any]:
    recipe = validate_recipe(body)
    return {"ok": True, "recipe_hash": recipe.digest()}


@router.get("/sessions")
async def list_sessions(ctx: Context, user: CurrentUser) -> list[dict[str, Any]]:
    async with ctx.reading() as conn:
        return [s.to_wire() for s in await store.list_sessions(conn, user.name, admin=user.is_admin)]


def _ref(ref: str) -> str:
    if len(ref) > 200 or (ref.isdigit() and int(ref) > 2**62):
        raise NotFound(f"no benchmark session {ref[:40]!r}")
    return ref


@router.get("/sessions/{ref}")
async def get_session(ref: str, ctx: Context, user: CurrentUser) -> dict[str, Any]:
    return (await _session(ctx, user, ref)).to_wire()


@router.put("/sessions/{ref}/results")
async def put_results(ref: str, body: ResultsPut, ctx: Context, user: CurrentUser) -> dict[str, Any]:
    _storable(body.model_dump(), "body")
    session = await _session(ctx, user, ref)
    if session.user != user.name:
        raise InvalidInput("results: only the session's owner stores its results", field="ref")
    done = None if body.state == "running" else time.time()
    async with ctx.writing() as conn:
        await store.save_results(
            conn,
            session.id,
            [r.model_dump() for r in body.rows],
            state=body.state,
            manifest=body.manifest,
            now=done,
        )
    return {"id": session.id, "rows": len(body.rows)}


@router.get("/sessions/{ref}/results")
async def get_results(
    ref: str, ctx: Context, user: CurrentUser, cell: str | None = None, metric: str | None = None
) -> list[dict[str, Any]]:
    session = await _session(ctx, user, ref)
    async with ctx.reading() as conn:
        return await store.query_results(conn, session.id, cell=cell, metric=metric)
