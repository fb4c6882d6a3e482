"""W1: scheduler throughput — no-op jobs (noop runtime) through submit, schedule, start, complete."""

from __future__ import annotations

import time
from collections.abc import Callable

from bench.context import Context
from bench.corral_server import CorralServer, all_succeeded, job_spec
from bench.model import Result
from bench.workloads.common import Outcome, interleaved, rows, start_server

# Many advertised cores so the measure is the scheduler and the store, not a cap on concurrency.
NOOP_WORKER = {"local_workers": "1", "local_worker_runtime": "noop", "local_worker_cores": "1000",
               "local_worker_memory": "4096Gi"}
BACKENDS = {"Corral (SQLite)": False, "Corral (PostgreSQL)": True}


def throughput(server: CorralServer, n: int) -> Callable[[], float]:
    def once() -> float:
        jobs = [job_spec(i, ["true"]) for i in range(1, n + 1)]
        with server.client() as c:
            t0 = time.perf_counter()
            batch_id = server.submit_bunches(c, jobs)
            status = server.wait(c, batch_id, timeout=60 + n / 50, poll=0.02)
            elapsed = time.perf_counter() - t0
        all_succeeded(status)
        return n / elapsed

    return once


def run(ctx: Context) -> list[Result]:
    n = ctx.sizes.w1_jobs
    servers: dict[str, CorralServer] = {}
    failures: dict[str, Outcome] = {}
    for system, postgres in BACKENDS.items():
        try:
            servers[system] = start_server(ctx, "w1", dict(NOOP_WORKER), postgres=postgres)
        except Exception as exc:
            failures[system] = Outcome(error=f"{type(exc).__name__}: {exc}"[:400])
            ctx.log(f"W1 {system}: could not start: {failures[system].error}")
    runs = {s: throughput(srv, n) for s, srv in servers.items()}
    outcomes = interleaved(ctx, "W1", runs, ctx.sizes.repeats)
    for server in servers.values():
        server.stop()
    outcomes.update(failures)
    note = f"{n:,} no-op jobs (0.25 cpu) per batch, 1 worker advertising 1,000 cores; submit to complete"
    return rows("W1", "throughput", "jobs/s", {s: outcomes[s] for s in BACKENDS},
                notes=dict.fromkeys(BACKENDS, note), higher_is_better=True)
