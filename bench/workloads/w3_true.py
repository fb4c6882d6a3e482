"""W3: N jobs running `true`, end to end, against the machine's raw spawn rate and the peers."""

from __future__ import annotations

from collections.abc import Callable

from bench.context import Context
from bench.corral_server import CorralServer, job_spec
from bench.model import Result
from bench.paths import cores
from bench.peers import hail, raw, sandbox_floor, slurm, snakemake
from bench.report import SANDBOX_FLOOR
from bench.workloads.common import (
    CORRAL_JOB_CPU,
    HOST,
    HOST_NOTE,
    SLOTS_PER_CORE,
    Outcome,
    host_worker_settings,
    interleaved,
    process_worker_settings,
    rows,
    start_server,
    warm_up,
)

RAW = "raw (xargs -P cores)"
SANDBOX = "bare bwrap, fewest flags (xargs -P cores)"


def corral_true(server: CorralServer, n: int) -> Callable[[], float]:
    def once() -> float:
        jobs = [job_spec(i, ["true"], cpu=CORRAL_JOB_CPU) for i in range(1, n + 1)]
        with server.client() as c:
            return server.run_batch(c, jobs, timeout=60 + n / 5, poll=0.05, bunches=True)

    return once


def run(ctx: Context) -> list[Result]:
    n, slots = ctx.sizes.w3_jobs, SLOTS_PER_CORE * cores()
    systems: dict[str, Callable[[], float]] = {
        RAW: lambda: raw.run_true(n), SANDBOX: lambda: raw.run_true(n, sandboxed=True),
        SANDBOX_FLOOR: lambda: sandbox_floor.run_true(n, slots),
    }
    failures: dict[str, Outcome] = {}
    try:
        systems["Corral"] = corral_true(warm_up(start_server(ctx, "w3", process_worker_settings())), n)
    except Exception as exc:
        failures["Corral"] = Outcome(error=f"{type(exc).__name__}: {exc}"[:400])
    try:
        systems[HOST] = corral_true(warm_up(start_server(ctx, "w3-host", host_worker_settings())), n)
    except Exception as exc:
        failures[HOST] = Outcome(error=f"{type(exc).__name__}: {exc}"[:400])
    systems.update({
        "SLURM (sbatch each)": lambda: slurm.run_true_sbatch(ctx, n),
        "SLURM (array)": lambda: slurm.run_true_array(ctx, n),
        "Hail Batch LocalBackend": lambda: hail.run_true(ctx, n),
        "Snakemake (local)": lambda: snakemake.run_true(ctx, n, slots),
    })
    outcomes = interleaved(ctx, "W3", systems, ctx.sizes.repeats)
    outcomes.update(failures)
    rates = {name: Outcome([n / t for t in o.samples], o.error) for name, o in outcomes.items()}
    mine = (RAW, SANDBOX, SANDBOX_FLOOR, "Corral", HOST)
    order = [*mine, *[name for name in systems if name not in mine]]
    notes = {
        RAW: f"{n:,} x `true`, {cores()} at a time",
        SANDBOX: "bwrap with the process runtime's root layout and namespaces only (no uid, seccomp, "
                 "network or cgroups): what the cheapest bwrap costs",
        SANDBOX_FLOOR: f"the process runtime's exact sandbox (same bwrap flags, uid, seccomp, private "
                       f"network, a cgroup per job with the same limits), {slots} at a time, no Corral: "
                       "its floor",
        "Corral": f"process runtime, 1 local worker with {cores()} cores, jobs of {CORRAL_JOB_CPU} cpu",
        HOST: HOST_NOTE,
        "SLURM (sbatch each)": "one sbatch per job; tuned node (64 advertised CPUs)",
        "SLURM (array)": "one --array job; tuned node (64 advertised CPUs)",
        "Hail Batch LocalBackend": "runs jobs one after another (its design)",
        "Snakemake (local)": f"--cores {slots}; time includes snakemake's start and DAG build",
    }
    ordered = {k: rates[k] for k in order}
    return rows("W3", "throughput", "jobs/s", ordered, notes=notes, higher_is_better=True)
