"""Job groups as the stock client creates them: nested under the root group 0 (the batch itself),
counts rolled up over descendants, cancelled as a group.

Group specs of an update use in-update ids 1..n; the update reserved the absolute range
start..start+n-1 when it was created (store.job_groups.reserve)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from corral.api.convert import iso
from corral.api.errors import validation_error_field
from corral.api.schemas import MAX_INT32, Attributes, JobSpec
from corral.domain.job_groups import descendants as tree_below
from corral.domain.states import JobState
from corral.errors import InvalidInput
from corral.store.batches import BatchRecord
from corral.store.job_groups import JobGroupRecord, StateCounts

ROOT = 0


class JobGroupSpec(BaseModel):
    """Bounded like the native specs (api/schemas.py): ids and counts fit their 32-bit columns, text its
    limits, on SQLite and PostgreSQL alike."""

    model_config = ConfigDict(extra="allow")
    job_group_id: int = Field(ge=1, le=MAX_INT32)
    in_update_parent_id: int | None = Field(default=None, ge=0, le=MAX_INT32)
    absolute_parent_id: int | None = Field(default=None, ge=0, le=MAX_INT32)
    attributes: Attributes = Field(default_factory=dict)
    callback: str | None = Field(default=None, max_length=4096)
    cancel_after_n_failures: int | None = Field(default=None, ge=1, le=MAX_INT32)


_GROUP_SPECS = TypeAdapter(list[JobGroupSpec])


def parse_group_specs(raw: Any, field: str) -> list[JobGroupSpec]:
    if not isinstance(raw, list):
        raise InvalidInput(f"{field}: send a JSON list of job group specs", field=field)
    try:
        return _GROUP_SPECS.validate_python(raw)
    except ValidationError as exc:
        path, message = validation_error_field(dict(exc.errors()[0]), prefix=field)
        raise InvalidInput(message, field=path) from None


def group_rows(
    specs: Sequence[JobGroupSpec], *, batch_id: int, update_id: int, start: int, n_groups: int,
    existing: dict[int, JobGroupRecord], now: float, field: str,
) -> list[dict[str, Any]]:
    """Rows for the store; 400 naming the spec whose id or parent is wrong."""
    rows = []
    for i, spec in enumerate(specs):
        at = f"{field}[{i}]"
        if spec.job_group_id > n_groups:
            raise InvalidInput(
                f"{at}.job_group_id: {spec.job_group_id} is outside this update's {n_groups} job groups "
                "(declare n_job_groups when creating the batch or update)",
                field=f"{at}.job_group_id",
            )
        own = start + spec.job_group_id - 1
        if spec.in_update_parent_id is not None:
            parent = ROOT if spec.in_update_parent_id == 0 else start + spec.in_update_parent_id - 1
            if parent >= own:
                raise InvalidInput(
                    f"{at}.in_update_parent_id: a job group's parent must come before it in the update",
                    field=f"{at}.in_update_parent_id",
                )
        else:
            parent = spec.absolute_parent_id if spec.absolute_parent_id is not None else ROOT
            if parent != ROOT and (parent not in existing or parent >= start):
                raise InvalidInput(
                    f"{at}.absolute_parent_id: batch {batch_id} has no job group {parent}",
                    field=f"{at}.absolute_parent_id",
                )
        rows.append({
            "batch_id": batch_id, "job_group_id": own, "update_id": update_id, "parent_id": parent,
            "attributes": spec.attributes, "callback": spec.callback, "cancelled": False, "time_created": now,
            "cancel_after_n_failures": spec.cancel_after_n_failures,
        })
    return rows


def resolve_job_groups(
    bunch: Sequence[JobSpec], *, start: int | None, n_groups: int, existing: dict[int, JobGroupRecord],
    field: str,
) -> None:
    """Each job's group as an absolute id (in absolute_job_group_id); 400 for a group that does not
    exist or was cancelled."""
    for i, job in enumerate(bunch):
        at = f"{field}[{i}]"
        if job.in_update_job_group_id is not None:
            k = job.in_update_job_group_id
            if k == ROOT:
                group = ROOT
            elif start is None or not 1 <= k <= n_groups:
                raise InvalidInput(
                    f"{at}.in_update_job_group_id: this update has no job group {k}",
                    field=f"{at}.in_update_job_group_id",
                )
            else:
                group = start + k - 1
        else:
            group = job.absolute_job_group_id or ROOT
            if group != ROOT and group not in existing:
                raise InvalidInput(
                    f"{at}.absolute_job_group_id: the batch has no job group {group}",
                    field=f"{at}.absolute_job_group_id",
                )
        found = existing.get(group)
        if found is not None and found.cancelled:
            raise InvalidInput(
                f"{at}: job group {group} is cancelled; it accepts no new jobs", field=f"{at}.job_group_id"
            )
        job.absolute_job_group_id = group
        job.in_update_job_group_id = None


def descendants(groups: Iterable[JobGroupRecord], root: int) -> set[int]:
    """root and every group below it."""
    return tree_below([(g.job_group_id, g.parent_id) for g in groups], root)


_DONE = {s.value for s in (JobState.SUCCESS, JobState.FAILED, JobState.ERROR, JobState.CANCELLED)}


def group_status(
    batch: BatchRecord, group: JobGroupRecord, members: set[int], counts: dict[int, StateCounts]
) -> dict[str, Any]:
    total = StateCounts()
    for gid in members:
        if gid in counts:
            total.add(counts[gid])
    by = total.by_state
    n_jobs = sum(by.values())
    n_completed = sum(n for s, n in by.items() if s in _DONE)
    n_failed = by.get("Failed", 0) + by.get("Error", 0)
    complete = batch.closed and n_completed == n_jobs
    if group.cancelled or batch.cancelled:
        state = "cancelled"
    elif n_failed:
        state = "failure"
    elif complete:
        state = "success"
    else:
        state = "running"
    return {
        "batch_id": batch.id, "job_group_id": group.job_group_id, "user": batch.user,
        "billing_project": batch.billing_project, "state": state, "complete": complete,
        "n_jobs": n_jobs, "n_completed": n_completed, "n_succeeded": by.get("Success", 0),
        "n_failed": n_failed, "n_cancelled": by.get("Cancelled", 0),
        "time_created": iso(group.time_created),
        "time_completed": iso(total.time_completed) if complete else None,
        "duration": _duration_ms(group.time_created, total.time_completed) if complete else None,
        "cost": total.cost, "msec_mcpu": total.msec_mcpu, "cost_breakdown": [],
        "attributes": group.attributes, "parent_id": group.parent_id,
    }


def _duration_ms(start: float, end: float | None) -> int | None:
    return None if end is None else max(0, round((end - start) * 1000))
