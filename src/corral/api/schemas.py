"""Wire schemas (pydantic) of the user-facing REST API: create / response shapes.

The shapes follow Hail Batch's API (see shared/HAIL_COMPAT.md) so the Hail-compatible routes are a
thin layer over the same code.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_JOBS_PER_BUNCH = 10_000
MAX_BODY_BYTES = 64 * 1024 * 1024


class FileTransfer(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    from_: str = Field(alias="from")
    to: str


class ResourcesSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    cpu: str | float | None = None
    memory: str | float | None = None
    storage: str | float | None = None
    gpus: int = 0
    gpu_type: str | None = None


class ProcessSpec(BaseModel):
    """Hail's `process`: {type: docker, image, command}."""

    model_config = ConfigDict(extra="allow")
    type: str = "docker"
    image: str | None = None
    command: list[str]


class EnvVar(BaseModel):
    name: str
    value: str
    secret: bool = False  # shown only to the batch's owner; members of its billing project see "[redacted]"


class JobSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    job_id: int
    name: str | None = None
    process: ProcessSpec
    # Parents inside the same update (1-based in-update ids) and parents already in the batch (absolute).
    in_update_parent_ids: list[int] = Field(default_factory=list)
    absolute_parent_ids: list[int] = Field(default_factory=list)
    parent_ids: list[int] | None = None  # legacy Hail field: absolute ids
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    env: list[EnvVar] = Field(default_factory=list)
    timeout: float | None = None
    always_run: bool = False
    always_copy_output: bool = False
    n_max_attempts: int = Field(default=20, ge=1, le=1000)
    attributes: dict[str, str] = Field(default_factory=dict)
    input_files: list[FileTransfer] = Field(default_factory=list)
    output_files: list[FileTransfer] = Field(default_factory=list)
    pool: str | None = None
    network: str | None = None
    in_update_job_group_id: int | None = None
    absolute_job_group_id: int | None = None


class BatchSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    billing_project: str = "default"
    token: str = Field(min_length=1, max_length=200)
    attributes: dict[str, str] = Field(default_factory=dict)
    n_jobs: int = Field(default=0, ge=0)
    cancel_after_n_failures: int | None = Field(default=None, ge=1)
    callback: str | None = None


class UpdateSpec(BaseModel):
    model_config = ConfigDict(extra="allow")
    token: str = Field(min_length=1, max_length=200)
    n_jobs: int = Field(ge=1)


class CreateFastRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    batch: BatchSpec
    bunch: list[JobSpec]


class UpdateFastRequest(BaseModel):
    model_config = ConfigDict(extra="allow")
    update: UpdateSpec
    bunch: list[JobSpec]


class CreateBatchResponse(BaseModel):
    id: int
    update_id: int | None = None
    start_job_id: int | None = None
    start_job_group_id: int = 1


class CreateUpdateResponse(BaseModel):
    update_id: int
    start_job_id: int
    start_job_group_id: int = 1


BatchStateName = Literal["open", "running", "success", "failure", "cancelled"]
JobStateName = Literal["Pending", "Ready", "Running", "Success", "Failed", "Error", "Cancelled"]


class BatchStatus(BaseModel):
    id: int
    user: str
    billing_project: str
    token: str
    state: BatchStateName
    complete: bool
    closed: bool
    n_jobs: int
    n_completed: int
    n_succeeded: int
    n_failed: int
    n_cancelled: int
    time_created: str | None
    time_closed: str | None
    time_completed: str | None
    duration: int | None  # milliseconds
    msec_mcpu: int
    cost: float
    cost_breakdown: list[dict[str, Any]] = Field(default_factory=list)
    attributes: dict[str, str]
    waiting: int | None = None  # Ready jobs that fit no instance their pool can bring up (single-batch GET)


class BatchList(BaseModel):
    batches: list[BatchStatus]
    last_batch_id: int | None


class JobSummary(BaseModel):
    batch_id: int
    job_id: int
    job_group_id: int = 0
    name: str | None
    user: str
    billing_project: str
    state: JobStateName
    exit_code: int | None
    duration: int | None
    cost: float
    msec_mcpu: int
    always_run: bool
    waiting_reason: str | None = None  # why a Ready job is not running, in words


class JobList(BaseModel):
    jobs: list[JobSummary]
    last_job_id: int | None


class JobStatus(JobSummary):
    status: dict[str, Any] | None
    spec: dict[str, Any] | None
    attributes: dict[str, str]


class AttemptStatus(BaseModel):
    attempt_id: str
    instance_name: str
    start_time: str | None
    end_time: str | None
    reason: str | None
    exit_code: int | None


class UserCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@-]+$")
    is_admin: bool = False


class UserCreated(BaseModel):
    name: str
    is_admin: bool
    token: str


class BillingProjectCreate(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    spend_limit: float | None = None


class BillingProjectStatus(BaseModel):
    billing_project: str
    users: list[str]
    status: str
    limit: float | None
    accrued_cost: float


class ErrorResponse(BaseModel):
    error: str
    message: str
    field: str | None = None
