"""Hail's /api/v1alpha submission routes: create(-fast), updates, bunches, commit, cancel, delete.

They reuse corral.api.submit; what is added here is the bucket mapping applied to every job's files
and a clear 400 for what Corral does not do yet (job groups below the root)."""

from __future__ import annotations

from typing import Any, TypeVar

import orjson
from fastapi import APIRouter, Request
from pydantic import ValidationError

from corral.api import submit
from corral.api.auth import CurrentUser
from corral.api.context import ApiContext, Context
from corral.api.errors import validation_error_field
from corral.api.gcpause import gc_paused
from corral.api.jobspecs import parse_bunch
from corral.api.schemas import BatchSpec, CreateFastRequest, JobSpec, UpdateFastRequest, UpdateSpec
from corral.errors import InvalidInput
from corral.hail.buckets import BucketMap
from corral.hail.shapes import ROOT_JOB_GROUP_ID, created

router = APIRouter(tags=["hail"])
M = TypeVar("M", CreateFastRequest, UpdateFastRequest)


def _buckets(ctx: ApiContext) -> BucketMap:
    found: BucketMap | None = getattr(ctx, "_hail_buckets", None)
    if found is None:
        found = BucketMap(ctx.settings.home, ctx.settings.buckets)
        ctx._hail_buckets = found  # type: ignore[attr-defined]
    return found


def _no_job_groups(groups: list[Any], field: str) -> None:
    if groups:
        raise InvalidInput(
            f"{field}: this server runs every job in the batch's root job group; create the jobs without "
            "create_job_group",
            field=field,
        )


def _adapt(ctx: ApiContext, bunch: list[JobSpec], field: str) -> None:
    """Bucket URLs -> storage URLs; only the root job group (0) exists."""
    buckets = _buckets(ctx)
    for i, job in enumerate(bunch):
        at = f"{field}[{i}]"
        for name in ("in_update_job_group_id", "absolute_job_group_id"):
            group = getattr(job, name)
            if group not in (None, ROOT_JOB_GROUP_ID):
                raise InvalidInput(
                    f"{at}.{name}: job group {group} does not exist; use the root job group 0",
                    field=f"{at}.{name}",
                )
        buckets.rewrite_job(job, at)


async def _json(request: Request) -> Any:
    body = await request.body()
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body: not valid JSON ({exc})", field="body") from None


def _model(cls: type[M], raw: Any) -> M:
    try:
        return cls.model_validate(raw)
    except ValidationError as exc:
        path, message = validation_error_field(dict(exc.errors()[0]), prefix="")
        raise InvalidInput(message, field=path) from None


@router.post("/batches/create-fast")
async def create_fast(request: Request, ctx: Context, user: CurrentUser) -> dict[str, Any]:
    raw = await _json(request)
    with gc_paused():
        body = _model(CreateFastRequest, raw)
        _no_job_groups(raw.get("job_groups") or [], "job_groups")
        _adapt(ctx, body.bunch, "bunch")
        response = await submit.create_fast(ctx, user, body)
    return created(response, response.id)


@router.post("/batches/create")
async def create(body: BatchSpec, ctx: Context, user: CurrentUser) -> dict[str, Any]:
    if (body.model_extra or {}).get("n_job_groups"):
        _no_job_groups([1], "n_job_groups")
    response = await submit.create_batch(ctx, user, body)
    return created(response, response.id)


@router.post("/batches/{batch_id}/updates/create")
async def create_update(batch_id: int, body: UpdateSpec, ctx: Context, user: CurrentUser) -> dict[str, Any]:
    if (body.model_extra or {}).get("n_job_groups"):
        _no_job_groups([1], "n_job_groups")
    return created(await submit.create_update(ctx, user, batch_id, body), batch_id)


@router.post("/batches/{batch_id}/update-fast")
async def update_fast(batch_id: int, request: Request, ctx: Context, user: CurrentUser) -> dict[str, Any]:
    raw = await _json(request)
    body = _model(UpdateFastRequest, raw)
    _no_job_groups(raw.get("job_groups") or [], "job_groups")
    _adapt(ctx, body.bunch, "bunch")
    return created(await submit.update_fast(ctx, user, batch_id, body), batch_id)


@router.post("/batches/{batch_id}/updates/{update_id}/jobs/create")
async def create_jobs(
    batch_id: int, update_id: int, request: Request, ctx: Context, user: CurrentUser
) -> dict[str, Any]:
    body = await request.body()
    with gc_paused():
        bunch = parse_bunch(body)
        del body
        _adapt(ctx, bunch, "bunch")
        await submit.add_bunch(ctx, user, batch_id, update_id, bunch)
    return {}


@router.post("/batches/{batch_id}/updates/{update_id}/job-groups/create")
async def create_job_groups(batch_id: int, update_id: int, request: Request, user: CurrentUser) -> None:
    raw = await _json(request)
    _no_job_groups(raw if isinstance(raw, list) else [raw], "job_groups")


@router.patch("/batches/{batch_id}/updates/{update_id}/commit")
async def commit_update(batch_id: int, update_id: int, ctx: Context, user: CurrentUser) -> dict[str, Any]:
    upd = await submit.commit(ctx, user, batch_id, update_id)
    return {"update_id": upd.update_id, "start_job_id": upd.start_job_id, "start_job_group_id": 1}


@router.patch("/batches/{batch_id}/cancel")
async def cancel(batch_id: int, ctx: Context, user: CurrentUser) -> dict[str, Any]:
    await submit.cancel(ctx, user, batch_id)
    return {}


@router.patch("/batches/{batch_id}/job-groups/{job_group_id}/cancel")
async def cancel_job_group(
    batch_id: int, job_group_id: int, ctx: Context, user: CurrentUser
) -> dict[str, Any]:
    if job_group_id != ROOT_JOB_GROUP_ID:
        raise InvalidInput(
            f"job_group_id: batch {batch_id} has only the root job group 0", field="job_group_id"
        )
    await submit.cancel(ctx, user, batch_id)
    return {}


@router.delete("/batches/{batch_id}")
async def delete(batch_id: int, ctx: Context, user: CurrentUser) -> dict[str, Any]:
    await submit.delete(ctx, user, batch_id)
    return {}
