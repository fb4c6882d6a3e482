"""Instance collections in the autoscaler's terms: the machine shape and limits of each, a job's own shape."""

from __future__ import annotations

from corral.domain.autoscaling import PoolLimits
from corral.domain.resources import parse_bytes
from corral.domain.scheduling import ReadyJob
from corral.providers.base import MachineShape
from corral.providers.config import InstanceCollectionConfig


def collection_shape(col: InstanceCollectionConfig) -> MachineShape | None:
    if col.shape is None:
        return None
    s = col.shape
    return MachineShape(
        name=col.name, cores=s.cores, memory_bytes=parse_bytes(s.memory, field=f"{col.name}.shape.memory"),
        gpus=s.gpus, gpu_type=s.gpu_type, labels=dict(s.labels), price_per_hour=s.price_per_hour,
        preemptible=col.preemptible,
    )


def collection_limits(col: InstanceCollectionConfig) -> PoolLimits | None:
    shape = collection_shape(col)
    if shape is None:
        return None
    return PoolLimits(
        cores_mcpu=int(shape.cores * 1000), memory_bytes=shape.memory_bytes, gpus=shape.gpus,
        gpu_type=shape.gpu_type, min_instances=col.min_instances, max_instances=col.max_instances,
        max_live_instances=col.max_live_instances, max_new_per_loop=col.max_new_instances_per_loop,
        idle_seconds=col.idle_seconds,
    )


def job_shape(job: ReadyJob, col: InstanceCollectionConfig) -> MachineShape:
    """A job-private instance is sized for its one job."""
    base = collection_shape(col)
    return MachineShape(
        name=f"job-{job.batch_id}-{job.job_id}", cores=job.cores_mcpu / 1000, memory_bytes=job.memory_bytes,
        gpus=job.gpus, gpu_type=job.gpu_type or (base.gpu_type if base else None),
        labels=dict(base.labels) if base else {}, preemptible=col.preemptible,
    )
