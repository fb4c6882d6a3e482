"""Wire schemas (pydantic) of the user-facing REST API: create / response shapes.

The shapes follow Hail Batch's API (see shared/HAIL_COMPAT.md) so the Hail-compatible routes are a
thin layer over the same code.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

MAX_JOBS_PER_BUNCH = 10_000
MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_INT32 = 2**31 - 1
MAX_JOBS_PER_UPDATE = 100_000_000  # job ids are 32-bit: a batch holds at most ~2**31 jobs over its updates

# Bounded values (the columns behind them are 32-bit integers and sized strings): out of range is a 400.
Int32 = Annotated[int, Field(ge=-(2**31), le=MAX_INT32)]
Name = Annotated[str, Field(max_length=100)]
AttributeKey = Annotated[str, Field(min_length=1, max_length=256)]
AttributeValue = Annotated[str, Field(max_length=64 * 1024)]
Attributes = dict[AttributeKey, AttributeValue]
Quantity = Annotated[str, Field(max_length=64)] | Annotated[float, Field(allow_inf_nan=False)]


class Wire(BaseModel):
    """Request bodies: numbers must be finite (JSON's Infinity/NaN extensions are refused)."""

    model_config = ConfigDict(allow_inf_nan=False)


class FileTransfer(Wire):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    from_: str = Field(alias="from", max_length=8192)
    to: str = Field(max_length=8192)


class ResourcesSpec(Wire):
    model_config = ConfigDict(extra="allow")
    cpu: Quantity | None = None
    memory: Quantity | None = None
    storage: Quantity | None = None
    gpus: int = Field(default=0, ge=0, le=1024)
    gpu_type: Name | None = None


class ProcessSpec(Wire):
    """Hail's `process`: {type: docker, image, command}."""

    model_config = ConfigDict(extra="allow")
    type: str = Field(default="docker", max_length=20)
    image: str | None = Field(default=None, max_length=1000)
    command: list[str]


class EnvVar(Wire):
    # What execve and a shell can hold: a letter or _ first, then letters, digits and _.
    name: str = Field(min_length=1, max_length=256, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    value: str
    secret: bool = False  # shown only to the batch's owner; members of its billing project see "[redacted]"


class JobSpec(Wire):
    model_config = ConfigDict(extra="allow")
    job_id: Int32
    name: str | None = Field(default=None, max_length=500)
    process: ProcessSpec
    # Parents inside the same update (1-based in-update ids) and parents already in the batch (absolute).
    in_update_parent_ids: list[Int32] = Field(default_factory=list)
    absolute_parent_ids: list[Int32] = Field(default_factory=list)
    parent_ids: list[Int32] | None = None  # legacy Hail field: absolute ids
    resources: ResourcesSpec = Field(default_factory=ResourcesSpec)
    env: list[EnvVar] = Field(default_factory=list)
    timeout: float | None = Field(default=None, le=10 * 365 * 24 * 3600)
    always_run: bool = False
    always_copy_output: bool = False
    n_max_attempts: int = Field(default=20, ge=1, le=1000)
    attributes: Attributes = Field(default_factory=dict)
    input_files: list[FileTransfer] = Field(default_factory=list)
    output_files: list[FileTransfer] = Field(default_factory=list)
    pool: Name | None = None
    network: str | None = Field(default=None, max_length=20)
    in_update_job_group_id: Int32 | None = None
    absolute_job_group_id: Int32 | None = None


class BatchSpec(Wire):
    model_config = ConfigDict(extra="allow")
    billing_project: Name = "default"
    token: str = Field(min_length=1, max_length=200)
    attributes: Attributes = Field(default_factory=dict)
    n_jobs: int = Field(default=0, ge=0, le=MAX_JOBS_PER_UPDATE)
    cancel_after_n_failures: int | None = Field(default=None, ge=1, le=MAX_INT32)
    callback: str | None = Field(default=None, max_length=4096)


class UpdateSpec(Wire):
    model_config = ConfigDict(extra="allow")
    token: str = Field(min_length=1, max_length=200)
    n_jobs: int = Field(ge=1, le=MAX_JOBS_PER_UPDATE)


class CreateFastRequest(Wire):
    model_config = ConfigDict(extra="allow")
    batch: BatchSpec
    bunch: list[JobSpec]


class UpdateFastRequest(Wire):
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
    cost_breakdown: list[dict[str, Any]] = Field(default_factory=list)  # [{resource, cost, usage}]
    spec: dict[str, Any] | None
    attributes: dict[str, str]


class AttemptStatus(BaseModel):
    attempt_id: str
    instance_name: str
    start_time: str | None
    end_time: str | None
    reason: str | None
    exit_code: int | None


class UserCreate(Wire):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.@-]+$")
    is_admin: bool = False


class UserCreated(BaseModel):
    name: str
    is_admin: bool
    token: str


class BillingProjectCreate(Wire):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.-]+$")
    spend_limit: float | None = Field(default=None, ge=0, le=1e15)


class SpendLimit(BaseModel):
    limit: float | str | None = None  # an amount in the site's currency; null: no limit


class BillingReportLine(BaseModel):
    key: str  # the project, user or day
    cost: float
    cost_breakdown: list[dict[str, Any]]


class BillingReport(BaseModel):
    by: Literal["project", "user", "day"]
    since: str | None
    until: str | None
    currency: str
    total: float
    rows: list[BillingReportLine]


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
