"""The `[billing]` section of the server's TOML file: every rate, with its unit in its name.

    [billing]
    currency = "USD"
    accrual_interval = 5.0            # seconds between charges of running attempts (the limit's overshoot)

    [billing.site]                    # local workers, and every collection without rates of its own
    cpu_core_hour = 0.04              # currency per core-hour
    memory_gib_hour = 0.005           # currency per GiB-hour
    storage_gib_hour = 0.0001         # currency per GiB-hour
    gpu_hour = { default = 1.0, A100 = 2.5 }   # currency per GPU-hour, by GPU type

    [billing.collections.lab]         # ssh: the collection's rates, then per host
    cpu_core_hour = 0.02
    [billing.collections.lab.hosts."gpu1.example.org"]
    gpu_hour = { A100 = 1.8 }

    [billing.collections.hpc]         # SLURM: TRES-style weights per partition -> billing units
    billing_unit_hour = 0.01          # currency per billing unit-hour
    partitions.debug = { cpu = 1.0, memory_gib = 0.25, gpu = 2.0 }

    [billing.collections.vast]        # rented hosts: the instance's own price, shared by its jobs
    pricing = "instance"

    [billing.collections.aws]         # clouds: a price table, currency per instance-hour by machine type
    price_table = { "m5.xlarge" = 0.192 }
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Rate = float  # currency per unit-hour


class ResourceRates(BaseModel):
    """Per-resource rates; a field left out falls back to the enclosing level (host -> collection -> site)."""

    model_config = ConfigDict(extra="forbid")

    cpu_core_hour: float | None = Field(default=None, ge=0)
    memory_gib_hour: float | None = Field(default=None, ge=0)
    storage_gib_hour: float | None = Field(default=None, ge=0)
    gpu_hour: dict[str, float] = Field(default_factory=dict)  # by GPU type; "default" for any other


class PartitionWeights(BaseModel):
    """TRESBillingWeights of a SLURM partition: billing units per core, per GiB, per GPU."""

    model_config = ConfigDict(extra="forbid")

    cpu: float = Field(default=0.0, ge=0)
    memory_gib: float = Field(default=0.0, ge=0)
    gpu: float = Field(default=0.0, ge=0)


class CollectionRates(ResourceRates):
    # auto: a price table entry or the provider's own instance price if there is one, else resources.
    pricing: Literal["auto", "resources", "instance"] = "auto"
    hosts: dict[str, ResourceRates] = Field(default_factory=dict)  # ssh: per host name
    billing_unit_hour: float | None = Field(default=None, ge=0)  # SLURM: currency per billing unit-hour
    partitions: dict[str, PartitionWeights] = Field(default_factory=dict)
    price_table: dict[str, float] = Field(default_factory=dict)  # clouds: per instance-hour by machine type


class BillingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True  # false: no ledger at all (costs stay 0); for measuring its overhead
    currency: str = "USD"
    accrual_interval: float = Field(default=5.0, gt=0, le=3600)
    site: ResourceRates = Field(default_factory=ResourceRates)
    collections: dict[str, CollectionRates] = Field(default_factory=dict)
