"""Corral's wire records -> the shapes the stock hailtop client reads (a few fields more)."""

from __future__ import annotations

from typing import Any

from corral.api.convert import batch_status, job_status, job_summary
from corral.api.schemas import CreateBatchResponse, CreateUpdateResponse
from corral.store.batches import BatchRecord
from corral.store.jobs_read import JobRecord

ROOT_JOB_GROUP_ID = 0
_COPY_EXIT = {"succeeded": 0, "failed": 1}


def hail_batch(batch: BatchRecord) -> dict[str, Any]:
    return batch_status(batch).model_dump()


def hail_job_group(batch: BatchRecord) -> dict[str, Any]:
    """The root job group: the batch's own counts."""
    out = hail_batch(batch)
    out["batch_id"] = out.pop("id")
    out["job_group_id"] = ROOT_JOB_GROUP_ID
    return out


def hail_job_entry(job: JobRecord, billing_project: str) -> dict[str, Any]:
    out = job_summary(job, billing_project).model_dump()
    out["job_group_id"] = job.job_group_id
    return out


def _step_statuses(status: dict[str, Any] | None, spec: dict[str, Any]) -> dict[str, Any]:
    """container_statuses with Hail's names (input, main, output), a step that did not run as null,
    and a note when the process sandbox stood in for the image the job named."""
    out = dict(status or {})
    steps = dict(out.get("container_statuses") or {})
    for step in ("input", "main", "output"):
        found = steps.get(step)
        if isinstance(found, dict) and found.get("exit_code") is None and found.get("state") in _COPY_EXIT:
            # a file-copy step has no process of its own: report it the way Hail's copier container would
            found = {**found, "exit_code": _COPY_EXIT[found["state"]]}
        steps[step] = found
    out["container_statuses"] = steps
    image = spec.get("image")
    if image and "note" not in out:
        main = steps.get("main") or {}
        note = main.get("note") if isinstance(main, dict) else None
        if note:
            out["note"] = note
    return out


def hail_job(job: JobRecord, billing_project: str, spec: dict[str, Any]) -> dict[str, Any]:
    out = job_status(job, billing_project, spec).model_dump()
    out["job_group_id"] = job.job_group_id
    out["status"] = _step_statuses(job.status, spec)
    out["spec"]["process"] = {"type": "docker", "image": spec.get("image"), "command": spec.get("command")}
    return out


def created(
    response: CreateBatchResponse | CreateUpdateResponse, batch_id: int, start_job_group_id: int
) -> dict[str, Any]:
    out = response.model_dump()
    out.setdefault("id", batch_id)
    out["start_job_group_id"] = start_job_group_id
    return out
