"""Wire schemas of what a user sees of the system: pools (instance collections), instances, users."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class PoolShape(BaseModel):
    cores: float | None = None
    memory: str | None = None
    gpus: int = 0
    gpu_type: str | None = None


class PoolStatus(BaseModel):
    name: str
    kind: str  # pool | job_private
    provider: str
    shape: PoolShape | None
    min_instances: int | None = None
    max_instances: int | None = None
    instances: dict[str, int]  # by state: pending, active
    cores_total: float  # of active instances
    cores_free: float
    jobs_running: int
    jobs_ready: int  # queued for this pool
    health: str  # ok | backing_off | failing: can the provider bring instances up?
    last_error: str | None
    time_last_error: str | None
    n_failures: int  # in a row, since the last instance that came up


class InstanceAttempt(BaseModel):
    batch_id: int | None  # None when the attempt is another user's (only admins see whose)
    job_id: int | None
    attempt_id: int | None
    user: str | None
    cores: float


class InstanceStatus(BaseModel):
    name: str
    pool: str
    state: str  # pending | active | inactive | deleted
    provider: str | None
    host_name: str | None  # as the worker's host calls itself
    address: str | None  # where the provider reached it (SSH address, SLURM node, …)
    provider_id: str | None  # the provider's own id (SLURM job id, process id, …)
    cores: float
    memory_bytes: int
    gpus: int
    gpu_type: str | None
    health: str  # healthy | starting | silent for Ns | ended
    time_created: str | None
    time_activated: str | None
    last_heartbeat: str | None
    jobs_running: int
    end_reason: str | None
    attempts: list[InstanceAttempt] = Field(default_factory=list)
    metadata: dict[str, Any] = Field(default_factory=dict)


class InstanceTokenRequest(BaseModel):
    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    pool: str | None = Field(default=None, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    cores: float = Field(gt=0, le=4096)
    memory: str = Field(default="4Gi", max_length=40)
    gpus: int = Field(default=0, ge=0, le=64)
    gpu_type: str | None = Field(default=None, max_length=100)


class InstanceToken(BaseModel):
    name: str
    pool: str
    token: str  # shown once
    command: str  # the `corral worker` command line that uses it


class UserInfo(BaseModel):
    name: str
    is_admin: bool
