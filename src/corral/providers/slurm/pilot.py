"""A pilot: one `sbatch` job that runs the Corral worker for one instance (pure: builds the script and
the options, submits nothing)."""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping

from corral.providers.base import InstanceRequest, MachineShape
from corral.providers.slurm.options import SlurmOptions

MIB = 1024 * 1024


def job_name(options: SlurmOptions, collection: str, instance: str) -> str:
    """Our job names carry a prefix and the collection, so a listing tells our jobs from anyone else's."""
    return f"{options.job_name_prefix}{collection}.{instance}"


def instance_of(options: SlurmOptions, collection: str, name: str) -> str | None:
    prefix = f"{options.job_name_prefix}{collection}."
    return name[len(prefix):] if name.startswith(prefix) and len(name) > len(prefix) else None


def pilot_comment(request: InstanceRequest) -> str:
    serves = f"user {request.serves}" if request.serves else "its users"
    return f"corral pool {request.collection} for {serves}; instance {request.name}"


def gres(options: SlurmOptions, shape: MachineShape) -> str | None:
    if options.gres:
        return options.gres
    if shape.gpus > 0:
        return f"gpu:{shape.gpu_type}:{shape.gpus}" if shape.gpu_type else f"gpu:{shape.gpus}"
    return None


def sbatch_args(options: SlurmOptions, request: InstanceRequest, log_dir: str) -> list[str]:
    shape = request.shape
    args = [
        f"--job-name={job_name(options, request.collection, request.name)}",
        "--nodes=1",
        "--ntasks=1",
        f"--cpus-per-task={max(1, math.ceil(shape.cores))}",
        f"--mem={max(1, math.ceil(shape.memory_bytes / MIB))}M",
        "--no-requeue",  # a pilot that lost its node is a lost instance; the driver retries its jobs
        "--export=NONE",  # the driver's environment (database URL, tokens) stays here
        f"--output={log_dir}/{request.name}.%j.log",
        f"--comment={pilot_comment(request)}",  # squeue -o %k: which pool and user the pilot serves
    ]
    for flag, value in (
        ("--partition", options.partition), ("--account", options.account), ("--qos", options.qos),
        ("--time", options.time_limit), ("--gres", gres(options, shape)),
        ("--signal", f"B:INT@{options.drain_before_end}" if options.drain_before_end else None),
    ):
        if value:
            args.append(f"{flag}={value}")
    return [*args, *options.sbatch_args]


def pilot_script(
    options: SlurmOptions, request: InstanceRequest, worker_url: str,
    worker_env: Mapping[str, str] | None = None,
) -> str:
    """The batch script: the worker's settings, then `exec` so SLURM's signals reach the worker itself.
    `worker_env`: what the worker takes from the server's settings (providers.base.worker_environment)."""
    shape = request.shape
    env = {
        "CORRAL_URL": worker_url,
        "CORRAL_INSTANCE_NAME": request.name,
        "CORRAL_WORKER_TOKEN": request.worker_token,
        "CORRAL_WORKER_CORES": f"{shape.cores:g}",
        "CORRAL_WORKER_MEMORY": str(shape.memory_bytes),
        "CORRAL_WORKER_RUNTIME": options.worker_runtime,
        # scancel, walltime and preemption send SIGTERM to every process of the job, jobs included: the
        # worker must not report those jobs as failed but give them back to the driver (lost -> retried).
        "CORRAL_WORKER_STOP_ON_TERM": "1",
        "PYTHONUNBUFFERED": "1",
    }
    if options.worker_work_dir:
        env["CORRAL_WORKER_WORK_DIR"] = options.worker_work_dir
    lines = ["#!/bin/bash", "# Corral pilot: runs one worker for this allocation."]
    env.update(worker_env or {})  # the site's [jobs] policy (e.g. host_network for services)
    lines += [f"export {k}={shlex.quote(v)}" for k, v in env.items()]
    if not options.worker_work_dir:
        # Jobs' scratch on the node's local disk (SLURM's TMPDIR), not in a home shared over the network.
        lines.append('export CORRAL_WORKER_WORK_DIR="${TMPDIR:-/tmp}/corral-pilot-${SLURM_JOB_ID:-$$}"')
    lines.append(f"exec {shlex.quote(options.python)} -m corral worker")
    return "\n".join(lines) + "\n"
