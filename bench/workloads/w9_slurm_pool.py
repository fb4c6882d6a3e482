"""W9: trivial jobs through a Corral pool of SLURM pilots vs plain `sbatch` per job and one `sbatch --array`,
on the same 4-node SLURM cluster in the same run: throughput (N jobs, submit -> last completion) and the
latency of one job (submit -> complete, p50/p95)."""

from __future__ import annotations

import time
from collections.abc import Callable

from bench.context import Context
from bench.corral_server import job_spec
from bench.model import Result, failed, percentile
from bench.peers import slurm_pool
from bench.peers.slurm import Slurm
from bench.peers.slurm_pool import PilotPool
from bench.workloads.common import CORRAL_JOB_CPU, Outcome, interleaved, rows

PILOTS, PILOT_CORES = 4, 8
POOL = "Corral SLURM pool (process)"
POOL_NOOP = "Corral SLURM pool (noop)"
POOL_HOST = "Corral SLURM pool (host runtime)"
SBATCH = "SLURM (sbatch each)"
ARRAY = "SLURM (array)"


def pool_batch(pool: PilotPool, n: int) -> Callable[[], float]:
    server = pool.server

    def once() -> float:
        jobs = [job_spec(i, ["true"], cpu=CORRAL_JOB_CPU) for i in range(1, n + 1)]
        with server.client() as c:
            return server.run_batch(c, jobs, timeout=60 + n / 5, bunches=True)

    return once


def pool_latency(pool: PilotPool) -> Callable[[], float]:
    server = pool.server

    def once() -> float:
        with server.client() as c:
            return server.run_batch(c, [job_spec(1, ["true"], cpu=CORRAL_JOB_CPU)], timeout=60, poll=0.002)

    return once


def sbatch_each(slurm: Slurm, n: int) -> float:
    slurm.mark()
    t0 = time.perf_counter()
    for _ in range(n):
        slurm.sbatch("--mem=64M", "--wrap", "true")
    slurm.wait_done(n, timeout=60 + n)
    return time.perf_counter() - t0


def array(slurm: Slurm, n: int) -> float:
    slurm.mark()
    t0 = time.perf_counter()
    slurm.sbatch("--mem=64M", f"--array=1-{n}", "--wrap", "true")
    slurm.wait_done(n, timeout=60 + n)
    return time.perf_counter() - t0


def sbatch_latency(slurm: Slurm) -> float:
    slurm.mark()
    t0 = time.perf_counter()
    job = slurm.sbatch("--mem=64M", "--wrap", "true")
    slurm.wait_job(job, timeout=60)
    elapsed = time.perf_counter() - t0
    slurm.wait_done(1, timeout=5)
    return elapsed


def _latencies(ctx: Context, system: str, once: Callable[[], float], runs: int) -> list[Result]:
    try:
        once()  # warm-up
        ms = [once() * 1000 for _ in range(runs)]
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:400]
        ctx.log(f"W9 {system}: latency FAILED {error}")
        return [failed("W9", system, f"latency p{p}", "ms", error) for p in (50, 95)]
    ctx.log(f"W9 {system}: latency p50 {percentile(ms, 50):.1f} ms, p95 {percentile(ms, 95):.1f} ms")
    note = f"{runs} single-job runs one after another"
    return [Result("W9", system, f"latency p{p}", percentile(ms, p), "ms", ms, note) for p in (50, 95)]


def run(ctx: Context) -> list[Result]:
    n, runs = ctx.sizes.w9_jobs, ctx.sizes.w9_runs
    slurm = slurm_pool.cluster(ctx)
    systems: dict[str, Callable[[], float]] = {}
    failures: dict[str, Outcome] = {}
    pools: dict[str, PilotPool] = {}
    for system, runtime in ((POOL, "process"), (POOL_HOST, "host"), (POOL_NOOP, "noop")):
        try:
            pools[system] = slurm_pool.start_pool(ctx, slurm, pilots=PILOTS, cores=PILOT_CORES,
                                                  runtime=runtime)
            systems[system] = pool_batch(pools[system], n)
            pool_batch(pools[system], PILOTS * int(PILOT_CORES / float(CORRAL_JOB_CPU)))()  # warm-up
        except Exception as exc:
            failures[system] = Outcome(error=f"{type(exc).__name__}: {exc}"[:400])
    systems[SBATCH] = lambda: sbatch_each(slurm, n)
    systems[ARRAY] = lambda: array(slurm, n)
    outcomes = interleaved(ctx, "W9", systems, ctx.sizes.repeats)
    outcomes.update(failures)
    rates = {name: Outcome([n / t for t in o.samples], o.error) for name, o in outcomes.items()}
    slots = int(PILOT_CORES / float(CORRAL_JOB_CPU))
    notes = {
        POOL: f"{n:,} x `true`; {PILOTS} pilots (sbatch jobs running `corral worker`, {PILOT_CORES} cores "
              f"each, one per node), jobs of {CORRAL_JOB_CPU} cpu ({slots} per pilot), pilots up",
        POOL_HOST: "same pool, pilots with the host runtime (cgroup limits, kill-the-tree, no sandbox; a "
                   "trusted single-user pool)",
        POOL_NOOP: "same pool path with the noop runtime (no process per job): what the pilots add",
        SBATCH: f"{n:,} x `sbatch --wrap true`, one sbatch per job; 4 nodes, 64 CPUs left beside the pools",
        ARRAY: f"one `sbatch --array=1-{n} --wrap true`",
    }
    order = [POOL, POOL_HOST, POOL_NOOP, SBATCH, ARRAY]
    results = rows("W9", "throughput", "jobs/s", {k: rates[k] for k in order if k in rates}, notes=notes,
                   higher_is_better=True)
    for system in (POOL, POOL_HOST, POOL_NOOP):
        if system in pools:
            results += _latencies(ctx, system, pool_latency(pools[system]), runs)
    results += _latencies(ctx, SBATCH, lambda: sbatch_latency(slurm), runs)
    return results
