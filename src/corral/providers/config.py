"""Configuration of instance collections and providers (the `[[instance_collections]]` and `[providers.*]`
sections of the server's TOML file). Example:

    [[instance_collections]]
    name = "lab"                # jobs choose it with resources.pool (or the server's default pool)
    kind = "pool"               # pool: many jobs share an instance | job_private: one instance per job
    provider = "ssh"            # a provider module by name: local | ssh | slurm
    shape = { cores = 4, memory = "16Gi", gpus = 0 }
    min_instances = 0           # kept even when idle
    max_instances = 8
    max_new_instances_per_loop = 2
    idle_seconds = 120          # an idle instance above min_instances is released after this
    preemptible = false
    [instance_collections.provider_options]   # provider-specific: partition, qos, hosts …
    partition = "debug"
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from corral.providers.prepare import PrepareConfig


class ShapeConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cores: float = Field(gt=0)
    memory: str = "4Gi"  # parsed with domain.resources.parse_bytes
    gpus: int = Field(default=0, ge=0)
    gpu_type: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    price_per_hour: float = Field(default=0.0, ge=0)


class InstanceCollectionConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    kind: Literal["pool", "job_private"] = "pool"
    provider: str
    shape: ShapeConfig | None = None  # pools: the worker shape; job_private: sized from each job
    min_instances: int = Field(default=0, ge=0)
    max_instances: int = Field(default=10, ge=0)
    max_live_instances: int | None = Field(default=None, ge=0)  # pending + active cap
    max_new_instances_per_loop: int = Field(default=4, ge=1)
    idle_seconds: float = Field(default=300.0, ge=0)
    preemptible: bool = False
    provider_options: dict[str, Any] = Field(default_factory=dict)
    startup_seconds: float | None = Field(default=None, ge=0)  # a new instance's bring-up (pool choice)
    prepare: PrepareConfig | None = None  # SSH-reached providers: checks and setup before jobs (prepare.py)
