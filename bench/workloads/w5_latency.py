"""W5: latency of one job, submit → complete: p50 and p95 over many runs, Corral and SLURM."""

from __future__ import annotations

from collections.abc import Callable

from bench.context import Context
from bench.corral_server import CorralServer, job_spec
from bench.model import Result, failed, percentile
from bench.peers import slurm
from bench.workloads.common import CORRAL_JOB_CPU, process_worker_settings, start_server


def corral_latency(ctx: Context, server: CorralServer) -> Callable[[], float]:
    client = ctx.cleanup.enter_context(server.client())

    def once() -> float:
        return server.run_batch(client, [job_spec(1, ["true"], cpu=CORRAL_JOB_CPU)], timeout=60, poll=0.002)

    return once


def _series(ctx: Context, system: str, make: Callable[[], Callable[[], float]], runs: int) -> list[Result]:
    try:
        once = make()
        once()  # warm-up (connections, caches), not counted
        ms = [once() * 1000 for _ in range(runs)]
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"[:400]
        ctx.log(f"W5 {system}: FAILED {error}")
        return [failed("W5", system, m, "ms", error) for m in ("latency p50", "latency p95")]
    ctx.log(f"W5 {system}: p50 {percentile(ms, 50):.1f} ms, p95 {percentile(ms, 95):.1f} ms")
    note = (f"{runs} runs one after another; Corral answers the wait when the batch completes (?wait=), "
            "SLURM's completion log is polled every 5 ms")
    return [Result("W5", system, f"latency p{p}", percentile(ms, p), "ms", ms, note) for p in (50, 95)]


def run(ctx: Context) -> list[Result]:
    runs = ctx.sizes.w5_runs
    results = _series(
        ctx, "Corral", lambda: corral_latency(ctx, start_server(ctx, "w5", process_worker_settings())), runs
    )
    results += _series(ctx, "SLURM (sbatch)", lambda: lambda: slurm.latency(ctx), runs)
    return results
