"""Retrying a batch: a new batch with the jobs that failed or were cancelled (`corral batch retry`).

The jobs keep their commands, resources and file transfers, so they read what their parents that
succeeded left in the batch's tmpdir; edges to those parents are dropped, edges among the retried
jobs kept.
"""

from __future__ import annotations

from typing import Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from corral.api import submit
from corral.api.access import visible_batch
from corral.api.auth import CurrentUser
from corral.api.context import Context
from corral.api.params import BatchId
from corral.api.schemas import (
    MAX_JOBS_PER_BUNCH,
    BatchSpec,
    CreateBatchResponse,
    CreateFastRequest,
    EnvVar,
    FileTransfer,
    JobSpec,
    ProcessSpec,
    ResourcesSpec,
)
from corral.errors import Conflict, InvalidInput
from corral.store.job_reasons import JobRecordSpec, jobs_to_rerun

router = APIRouter(prefix="/api/v1/batches", tags=["batches"])

RETRY_STATES = {
    "failed": ["Failed", "Error", "Cancelled"], "all": ["Success", "Failed", "Error", "Cancelled"],
}


class RetryRequest(BaseModel):
    token: str = Field(min_length=1, max_length=200)  # the new batch's idempotency token
    which: Literal["failed", "all"] = "failed"


def _transfers(items: object) -> list[FileTransfer]:
    return [FileTransfer.model_validate(t) for t in items] if isinstance(items, list) else []


def _job_spec(job: JobRecordSpec, position: int, parents: list[int]) -> JobSpec:
    spec = job.spec
    env = spec.get("env") or {}
    return JobSpec(
        job_id=position,
        name=job.name,
        process=ProcessSpec(image=spec.get("image"), command=list(spec.get("command") or [])),
        in_update_parent_ids=parents,
        resources=ResourcesSpec(
            cpu=f"{job.cores_mcpu}m", memory=str(job.memory_bytes), storage=str(job.storage_bytes),
            gpus=job.gpus, gpu_type=job.gpu_type,
        ),
        env=[EnvVar(name=str(k), value=str(v)) for k, v in env.items()] if isinstance(env, dict) else [],
        timeout=spec.get("timeout"),
        always_run=job.always_run,
        always_copy_output=bool(spec.get("always_copy_output")),
        n_max_attempts=job.n_max_attempts,
        attributes=dict(job.attributes),
        input_files=_transfers(spec.get("input_files")),
        output_files=_transfers(spec.get("output_files")),
        pool=job.pool,
        network=spec.get("network"),
    )


@router.post("/{batch_id}/retry")
async def retry(
    batch_id: BatchId, body: RetryRequest, ctx: Context, user: CurrentUser
) -> CreateBatchResponse:
    """A new batch of this batch's failed and cancelled jobs (`which=all`: every job)."""
    async with ctx.reading() as conn:
        batch = await visible_batch(conn, batch_id, user)
        if not batch.complete:
            raise Conflict(
                f"batch_id: batch {batch_id} is still running; wait for it or cancel it first",
                field="batch_id",
            )
        found = await jobs_to_rerun(conn, batch_id, RETRY_STATES[body.which])
    if not found:
        raise InvalidInput(
            f"batch_id: batch {batch_id} has no failed or cancelled job to retry", field="batch_id"
        )
    if len(found) > MAX_JOBS_PER_BUNCH:
        raise InvalidInput(
            f"batch_id: {len(found)} jobs to retry; at most {MAX_JOBS_PER_BUNCH} at once", field="batch_id"
        )
    position = {job.job_id: i + 1 for i, (job, _) in enumerate(found)}
    bunch = [
        _job_spec(job, position[job.job_id], [position[p] for p in parents if p in position])
        for job, parents in found
    ]
    attributes = {**batch.attributes, "retry_of": str(batch_id)}
    spec = BatchSpec(billing_project=batch.billing_project, token=body.token, attributes=attributes,
                     n_jobs=len(bunch), cancel_after_n_failures=batch.cancel_after_n_failures)
    return await submit.create_fast(ctx, user, CreateFastRequest(batch=spec, bunch=bunch))
