"""Hail's /api/v1alpha submission routes: create(-fast), updates, bunches, commit, cancel, delete.

They reuse corral.api.submit; what is added here is the bucket mapping applied to every job's files
and job groups (corral.hail.group_submit)."""

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
from corral.api.params import BatchId, JobGroupId, UpdateId
from corral.api.schemas import BatchSpec, CreateFastRequest, JobSpec, UpdateFastRequest, UpdateSpec
from corral.errors import InvalidInput
from corral.hail import bodies, group_submit
from corral.hail.buckets import BucketMap
from corral.hail.group_cancel import cancel_group
from corral.hail.job_groups import ROOT, parse_group_specs
from corral.hail.shapes import created
from corral.hail.stand_ins import replace_hailtop_delete

router = APIRouter(tags=["hail"])
M = TypeVar("M", CreateFastRequest, UpdateFastRequest)


def _buckets(ctx: ApiContext) -> BucketMap:
    found: BucketMap | None = getattr(ctx, "_hail_buckets", None)
    if found is None:
        found = BucketMap(ctx.settings.home, ctx.settings.buckets)
        ctx._hail_buckets = found  # type: ignore[attr-defined]
    return found


def _adapt(ctx: ApiContext, bunch: list[JobSpec], field: str) -> None:
    """Bucket URLs -> storage URLs the workers reach; stand-ins for jobs that need Hail's image."""
    buckets = _buckets(ctx)
    for i, job in enumerate(bunch):
        buckets.rewrite_job(job, f"{field}[{i}]")
        replace_hailtop_delete(job)


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


def _n_job_groups(spec: BatchSpec | UpdateSpec) -> int:
    n = (spec.model_extra or {}).get("n_job_groups") or 0
    if not isinstance(n, int) or n < 0:
        raise InvalidInput("n_job_groups: give a whole number >= 0", field="n_job_groups")
    return n


@router.post("/batches/create-fast", openapi_extra=bodies.CREATE_FAST)
async def create_fast(request: Request, ctx: Context, user: CurrentUser) -> dict[str, Any]:
    raw = await _json(request)
    with gc_paused():
        body = _model(CreateFastRequest, raw)
        specs = parse_group_specs(raw.get("job_groups") or [], "job_groups")
        _adapt(ctx, body.bunch, "bunch")
        if not specs:
            await group_submit.resolve_bunch(ctx, 0, None, body.bunch)  # only the root group exists yet
            response = await submit.create_fast(ctx, user, body)
            return created(response, response.id, 1)
        if not body.bunch:
            raise InvalidInput("bunch: a batch created with job groups needs at least one job", field="bunch")
        group_submit.dry_run(ctx, specs, body.bunch, start=1, n_jobs=len(body.bunch), existing={})
        spec = body.batch.model_copy(update={"n_jobs": len(body.bunch)})
        response = await submit.create_batch(ctx, user, spec)
        assert response.update_id is not None
        await group_submit.submit_with_groups(ctx, user, response.id, response.update_id, specs, body.bunch)
    return created(response, response.id, 1)


@router.post("/batches/create")
async def create(body: BatchSpec, ctx: Context, user: CurrentUser) -> dict[str, Any]:
    n_groups = _n_job_groups(body)
    response = await submit.create_batch(ctx, user, body)
    start = 1
    if response.update_id is not None:
        start = await group_submit.reserve(ctx, response.id, response.update_id, n_groups)
    return created(response, response.id, start)


@router.post("/batches/{batch_id}/updates/create")
async def create_update(
    batch_id: BatchId, body: UpdateSpec, ctx: Context, user: CurrentUser
) -> dict[str, Any]:
    n_groups = _n_job_groups(body)
    response = await submit.create_update(ctx, user, batch_id, body)
    start = await group_submit.reserve(ctx, batch_id, response.update_id, n_groups)
    return created(response, batch_id, start)


@router.post("/batches/{batch_id}/update-fast", openapi_extra=bodies.UPDATE_FAST)
async def update_fast(batch_id: BatchId, request: Request, ctx: Context, user: CurrentUser) -> dict[str, Any]:
    raw = await _json(request)
    body = _model(UpdateFastRequest, raw)
    specs = parse_group_specs(raw.get("job_groups") or [], "job_groups")
    _adapt(ctx, body.bunch, "bunch")
    if not specs:
        await group_submit.resolve_bunch(ctx, batch_id, None, body.bunch)
        response = await submit.update_fast(ctx, user, batch_id, body)
        start = await group_submit.reserve(ctx, batch_id, response.update_id, 0)
        return created(response, batch_id, start)
    existing = await group_submit.existing_groups(ctx, batch_id)
    start = max(existing, default=0) + 1
    group_submit.dry_run(ctx, specs, body.bunch, start=start, n_jobs=body.update.n_jobs, existing=existing)
    update = await submit.create_update(ctx, user, batch_id, body.update)
    await group_submit.submit_with_groups(ctx, user, batch_id, update.update_id, specs, body.bunch)
    reserved = await group_submit.update_range(ctx, batch_id, update.update_id)
    return created(update, batch_id, reserved[0] if reserved else 1)


@router.post("/batches/{batch_id}/updates/{update_id}/jobs/create", openapi_extra=bodies.BUNCH)
async def create_jobs(
    batch_id: BatchId, update_id: UpdateId, request: Request, ctx: Context, user: CurrentUser
) -> dict[str, Any]:
    body = await request.body()
    with gc_paused():
        bunch = parse_bunch(body)
        del body
        _adapt(ctx, bunch, "bunch")
        await group_submit.resolve_bunch(ctx, batch_id, update_id, bunch)
        await submit.add_bunch(ctx, user, batch_id, update_id, bunch)
    return {}


@router.post(
    "/batches/{batch_id}/updates/{update_id}/job-groups/create", openapi_extra=bodies.JOB_GROUPS
)
async def create_job_groups(
    batch_id: BatchId, update_id: UpdateId, request: Request, ctx: Context, user: CurrentUser
) -> dict[str, Any]:
    specs = parse_group_specs(await _json(request), "job_groups")
    await group_submit.add_groups(ctx, user, batch_id, update_id, specs)
    return {}


@router.patch("/batches/{batch_id}/updates/{update_id}/commit")
async def commit_update(
    batch_id: BatchId, update_id: UpdateId, ctx: Context, user: CurrentUser
) -> dict[str, Any]:
    await group_submit.check_groups_complete(ctx, batch_id, update_id)
    upd = await submit.commit(ctx, user, batch_id, update_id)
    reserved = await group_submit.update_range(ctx, batch_id, update_id)
    return {
        "update_id": upd.update_id, "start_job_id": upd.start_job_id,
        "start_job_group_id": reserved[0] if reserved else 1,
    }


@router.patch("/batches/{batch_id}/cancel")
async def cancel(batch_id: BatchId, ctx: Context, user: CurrentUser) -> dict[str, Any]:
    await submit.cancel(ctx, user, batch_id)
    return {}


@router.patch("/batches/{batch_id}/job-groups/{job_group_id}/cancel")
async def cancel_job_group(
    batch_id: BatchId, job_group_id: JobGroupId, ctx: Context, user: CurrentUser
) -> dict[str, Any]:
    if job_group_id == ROOT:
        await submit.cancel(ctx, user, batch_id)
    else:
        await cancel_group(ctx, user, batch_id, job_group_id)
    return {}


@router.delete("/batches/{batch_id}")
async def delete(batch_id: BatchId, ctx: Context, user: CurrentUser) -> dict[str, Any]:
    await submit.delete(ctx, user, batch_id)
    return {}
