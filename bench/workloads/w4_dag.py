"""W4: a DAG 1 → N → 1 of `true` jobs, submit to last completion, on Corral and the peers."""

from __future__ import annotations

from collections.abc import Callable

from bench.context import Context
from bench.corral_server import CorralServer, job_spec
from bench.model import Result
from bench.paths import cores
from bench.peers import hail, slurm, snakemake
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


def dag_jobs(fanout: int) -> list[dict[str, object]]:
    jobs = [job_spec(1, ["true"], cpu=CORRAL_JOB_CPU)]
    jobs += [job_spec(i, ["true"], parents=[1], cpu=CORRAL_JOB_CPU) for i in range(2, fanout + 2)]
    jobs.append(job_spec(fanout + 2, ["true"], parents=list(range(2, fanout + 2)), cpu=CORRAL_JOB_CPU))
    return jobs


def corral_dag(server: CorralServer, fanout: int) -> Callable[[], float]:
    def once() -> float:
        jobs = dag_jobs(fanout)
        with server.client() as c:
            return server.run_batch(c, jobs, timeout=60 + fanout / 5)

    return once


def run(ctx: Context) -> list[Result]:
    fanout, slots = ctx.sizes.w4_fanout, SLOTS_PER_CORE * cores()
    systems: dict[str, Callable[[], float]] = {}
    failures: dict[str, Outcome] = {}
    try:
        systems["Corral"] = corral_dag(warm_up(start_server(ctx, "w4", process_worker_settings())), fanout)
    except Exception as exc:
        failures["Corral"] = Outcome(error=f"{type(exc).__name__}: {exc}"[:400])
    try:
        systems[HOST] = corral_dag(warm_up(start_server(ctx, "w4-host", host_worker_settings())), fanout)
    except Exception as exc:
        failures[HOST] = Outcome(error=f"{type(exc).__name__}: {exc}"[:400])
    systems.update({
        "SLURM (array)": lambda: slurm.run_dag(ctx, fanout),
        "Hail Batch LocalBackend": lambda: hail.run_dag(ctx, fanout),
        "Snakemake (local)": lambda: snakemake.run_dag(ctx, fanout, slots),
    })
    outcomes = interleaved(ctx, "W4", systems, ctx.sizes.repeats)
    outcomes.update(failures)
    order = ["Corral", HOST, *[name for name in systems if name not in ("Corral", HOST)]]
    notes = {
        "Corral": f"1 → {fanout} → 1 in one batch (create-fast), jobs of {CORRAL_JOB_CPU} cpu",
        HOST: HOST_NOTE,
        "SLURM (array)": "root; --array of the middle with afterok:root; sink with afterok:array",
        "Hail Batch LocalBackend": "depends_on; runs jobs one after another",
        "Snakemake (local)": f"--cores {slots}; rules root → mid/{{i}} → sink",
    }
    return rows("W4", f"DAG 1→{fanout}→1", "s", {k: outcomes[k] for k in order}, notes=notes,
                higher_is_better=False)
