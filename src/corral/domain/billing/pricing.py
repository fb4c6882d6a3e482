"""What an attempt is charged for: its resources, each at a rate found from the billing config.

Resource names say what and where: `cpu/site`, `memory/lab/gpu1.example.org`, `gpu/site/A100`,
`cpu/hpc/debug` (a SLURM partition), `instance/vast/vast-1a2b` (a rented host's own price),
`instance/aws/m5.xlarge` (a price table entry). Versions are added by the rate book (`cpu/site/3`).
Quantities are integers in each kind's unit (QUANTITY_PER_UNIT): milli-cores, MiB, GPUs, millionths
of an instance; usage is quantity x milliseconds, so charges add up exactly however they are sliced.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from corral.domain.billing.config import BillingConfig, CollectionRates, ResourceRates

MIB = 1024**2
# How many integer quantity units make the unit the rate is quoted in (a core, a GiB, a GPU, an instance).
QUANTITY_PER_UNIT: dict[str, int] = {"cpu": 1000, "memory": 1024, "storage": 1024, "gpu": 1,
                                     "instance": 1_000_000}
RATE_UNITS: dict[str, str] = {"cpu": "core-hour", "memory": "GiB-hour", "storage": "GiB-hour",
                              "gpu": "GPU-hour", "instance": "instance-hour"}
WHOLE_INSTANCE = QUANTITY_PER_UNIT["instance"]


@dataclass(frozen=True, slots=True)
class InstanceFacts:
    """What billing needs to know about the instance an attempt runs on."""

    name: str
    collection: str
    job_private: bool
    cores_mcpu: int
    memory_bytes: int
    gpus: int = 0
    gpu_type: str | None = None
    host: str | None = None  # ssh: the host it runs on
    partition: str | None = None  # SLURM
    machine_type: str | None = None  # clouds: the price table's key
    price_per_hour: float | None = None  # the provider's own price for the whole instance (rented hosts)


@dataclass(frozen=True, slots=True)
class AttemptDemand:
    cores_mcpu: int
    memory_bytes: int
    storage_bytes: int = 0
    gpus: int = 0


@dataclass(frozen=True, slots=True)
class PricedResource:
    resource: str  # without version
    rate: float  # currency per unit-hour
    quantity: int  # in QUANTITY_PER_UNIT of the kind

    @property
    def kind(self) -> str:
        return kind_of(self.resource)


def kind_of(resource: str) -> str:
    return resource.split("/", 1)[0]


def _mib(n_bytes: int) -> int:
    return math.ceil(max(0, n_bytes) / MIB)


def instance_share(instance: InstanceFacts, demand: AttemptDemand) -> int:
    """An attempt's share of its instance, in millionths: whole for a job-private instance; else its
    GPUs' share on a GPU host, its cores' share otherwise (shares of one instance never sum above 1)."""
    if instance.job_private:
        return WHOLE_INSTANCE
    if instance.gpus > 0 and demand.gpus > 0:
        share = demand.gpus / instance.gpus
    else:
        share = demand.cores_mcpu / max(1, instance.cores_mcpu)
    return max(1, min(WHOLE_INSTANCE, round(share * WHOLE_INSTANCE)))


def _instance_price(rates: CollectionRates | None, instance: InstanceFacts) -> tuple[str, float] | None:
    """(resource, price per instance-hour) if the instance is priced whole, else None."""
    if rates is not None and rates.pricing == "resources":
        return None
    if rates is not None and instance.machine_type and instance.machine_type in rates.price_table:
        return (f"instance/{instance.collection}/{instance.machine_type}",
                rates.price_table[instance.machine_type])
    if instance.price_per_hour is not None and instance.price_per_hour > 0:
        return f"instance/{instance.collection}/{instance.name}", instance.price_per_hour
    if rates is not None and rates.pricing == "instance":
        return f"instance/{instance.collection}/{instance.name}", 0.0
    return None


def _layered(site: ResourceRates, rates: CollectionRates | None, host: ResourceRates | None,
             instance: InstanceFacts) -> tuple[str, ResourceRates]:
    """The most specific rates for each resource, and the place they come from (for the name)."""
    where = "site"
    merged = site.model_copy(deep=True)
    for level, name in ((rates, instance.collection), (host, f"{instance.collection}/{instance.host}")):
        if level is None:
            continue
        changed = False
        for field in ("cpu_core_hour", "memory_gib_hour", "storage_gib_hour"):
            value = getattr(level, field)
            if value is not None:
                setattr(merged, field, value)
                changed = True
        if level.gpu_hour:
            merged.gpu_hour = {**merged.gpu_hour, **level.gpu_hour}
            changed = True
        if changed:
            where = name
    return where, merged


def price_attempt(
    config: BillingConfig, instance: InstanceFacts, demand: AttemptDemand, *, site_cpu_core_hour: float = 0.0
) -> list[PricedResource]:
    """The resources an attempt is charged for and their rates (currency per unit-hour).

    `site_cpu_core_hour` is the older `cost_per_core_hour` setting, used when [billing.site] names no
    cpu rate."""
    rates = config.collections.get(instance.collection)
    whole = _instance_price(rates, instance)
    if whole is not None:
        return [PricedResource(whole[0], whole[1], instance_share(instance, demand))]
    cores, memory, gpus = demand.cores_mcpu, demand.memory_bytes, demand.gpus
    if instance.job_private:  # the job pays for the whole instance it has to itself
        cores, memory = max(cores, instance.cores_mcpu), max(memory, instance.memory_bytes)
        gpus = max(gpus, instance.gpus)
    gpu_type = instance.gpu_type or "any"
    if rates is not None and rates.billing_unit_hour is not None and instance.partition in rates.partitions:
        weights = rates.partitions[instance.partition]
        unit = rates.billing_unit_hour
        where = f"{instance.collection}/{instance.partition}"
        out = [PricedResource(f"cpu/{where}", unit * weights.cpu, cores),
               PricedResource(f"memory/{where}", unit * weights.memory_gib, _mib(memory))]
        if gpus:
            out.append(PricedResource(f"gpu/{where}/{gpu_type}", unit * weights.gpu, gpus))
        return out
    host = rates.hosts.get(instance.host) if rates is not None and instance.host else None
    where, merged = _layered(config.site, rates, host, instance)
    cpu_rate = merged.cpu_core_hour if merged.cpu_core_hour is not None else site_cpu_core_hour
    out = [PricedResource(f"cpu/{where}", cpu_rate, cores),
           PricedResource(f"memory/{where}", merged.memory_gib_hour or 0.0, _mib(memory))]
    if demand.storage_bytes > 0:
        out.append(PricedResource(f"storage/{where}", merged.storage_gib_hour or 0.0,
                                  _mib(demand.storage_bytes)))
    if gpus:
        gpu_rate = merged.gpu_hour.get(gpu_type, merged.gpu_hour.get("default", 0.0))
        out.append(PricedResource(f"gpu/{where}/{gpu_type}", gpu_rate, gpus))
    return out
