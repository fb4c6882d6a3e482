"""What a job needs and what a pool can ever offer, in one value type; why a job cannot be placed (pure)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from corral.domain.placement import gpus_fit
from corral.domain.resources import parse_bytes
from corral.errors import InvalidInput


@dataclass(frozen=True, slots=True)
class Resources:
    """Cores (milli-cores), memory (bytes) and GPUs (count, type: any type when None) that travel together:
    what a job needs, what an instance has or has free."""

    cores_mcpu: int
    memory_bytes: int
    gpus: int = 0
    gpu_type: str | None = None

    def fits_in(self, capacity: Resources) -> bool:
        return (
            self.cores_mcpu <= capacity.cores_mcpu
            and self.memory_bytes <= capacity.memory_bytes
            and gpus_fit(self.gpus, self.gpu_type, capacity.gpus, capacity.gpu_type)
        )

    def describe(self) -> str:
        """'1 core and 4 GiB', '2.5 cores, 512 MiB and 1 GPU (a100)'."""
        parts = [_cores(self.cores_mcpu), _size(self.memory_bytes)]
        if self.gpus:
            parts.append(f"{self.gpus} GPU{'s' if self.gpus != 1 else ''}"
                         + (f" ({self.gpu_type})" if self.gpu_type else ""))
        return ", ".join(parts[:-1]) + " and " + parts[-1]


def _cores(mcpu: int) -> str:
    n = mcpu / 1000
    text = f"{n:g}" if n >= 0.01 else f"{mcpu}m"
    return f"{text} core" + ("" if n == 1 else "s")


def _size(n: int) -> str:
    for unit, size in (("TiB", 1 << 40), ("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size:
            value = n / size
            return f"{value:.3g} {unit}" if not value.is_integer() else f"{int(value)} {unit}"
    return f"{n} bytes"


def largest(capacities: Iterable[Resources]) -> Resources | None:
    """The instance with the most cores (then memory): what 'the pool's largest instance' means."""
    return max(capacities, key=lambda r: (r.cores_mcpu, r.memory_bytes, r.gpus), default=None)


def why_unplaceable(job: Resources, pool: str, biggest: Resources | None) -> str | None:
    """Why a job can never run in `pool`, in the user's words; None when it can (or nobody knows yet)."""
    if biggest is None or job.fits_in(biggest):
        return None
    return f"needs {job.describe()}; pool {pool}'s largest instance has {biggest.describe()}"


@dataclass(frozen=True, slots=True)
class SiteCollection:
    """A collection as submissions see it: its kind and the largest instance it can bring up
    (None: unknown, e.g. hosts that report their own size; job-private: sized per job unless capped)."""

    name: str
    kind: str  # pool | job_private
    largest: Resources | None


def collection_capacity(name: str, kind: str, config: Mapping[str, Any]) -> SiteCollection:
    """From a collection's stored config: a configured `shape`, or the local pool's cores and memory."""
    try:
        shape = config.get("shape")
        if isinstance(shape, Mapping) and shape.get("cores") is not None and shape.get("memory") is not None:
            gpus = int(shape.get("gpus") or 0)
            resources = Resources(
                math.floor(float(shape["cores"]) * 1000), parse_bytes(shape["memory"], field="shape.memory"),
                gpus, shape.get("gpu_type"),
            )
            return SiteCollection(name, kind, resources)
        if config.get("cores") is not None and config.get("memory_bytes") is not None:
            resources = Resources(math.floor(float(config["cores"]) * 1000), int(config["memory_bytes"]))
            return SiteCollection(name, kind, resources)
    except (TypeError, ValueError, InvalidInput):
        pass
    return SiteCollection(name, kind, None)


def check_placeable(
    job: Resources,
    pool: str,
    collections: Mapping[str, SiteCollection],
    *,
    default_pool: str,
    where: str,
    unnamed_pools: Sequence[str] = (),
) -> None:
    """At submission: the job's pool must exist, and some instance the site can bring up must fit it
    (its pool's largest instance, or a job-private collection). Raises InvalidInput naming the job.

    `unnamed_pools`: with `pool_choice = "cheapest"`, the other pools a job queued on the default pool
    (it names none) may be sent to; any of them that can ever run it will do."""
    if pool == default_pool and unnamed_pools:
        _check_any_pool(job, [default_pool, *unnamed_pools], collections, where=where)
        return
    col = collections.get(pool)
    if col is None:
        if pool == default_pool:
            return  # the default pool may be served by workers that have not registered yet
        pools = {n for n, c in collections.items() if c.kind == "pool"} | {default_pool}
        raise InvalidInput(
            f"{where}.pool: there is no pool named {pool!r}; pools: {', '.join(sorted(pools))}",
            field=f"{where}.pool",
        )
    reason = why_unplaceable(job, pool, col.largest)
    if reason is None:
        return
    for other in collections.values():
        if other.kind == "job_private" and (other.largest is None or job.fits_in(other.largest)):
            return
    raise InvalidInput(
        f"{where}.resources: the job {reason}, and no job-private collection can take it; ask for less",
        field=f"{where}.resources",
    )


def _check_any_pool(
    job: Resources, pools: Sequence[str], collections: Mapping[str, SiteCollection], *, where: str
) -> None:
    sizes: list[str] = []
    for name in dict.fromkeys(pools):
        col = collections.get(name)
        if col is None or col.largest is None or job.fits_in(col.largest):
            return  # it fits (or its instances report their own size: nobody knows yet)
        sizes.append(f"pool {name}'s largest instance has {col.largest.describe()}")
    if any(c.kind == "job_private" and (c.largest is None or job.fits_in(c.largest))
           for c in collections.values()):
        return
    raise InvalidInput(
        f"{where}.resources: the job needs {job.describe()} and names no pool, but no pool can ever run it "
        f"({'; '.join(sizes)}), and no job-private collection can take it; ask for less",
        field=f"{where}.resources",
    )
