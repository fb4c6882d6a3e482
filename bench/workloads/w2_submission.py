"""W2: how long the client waits until a 100,000-job batch is accepted (durably committed)."""

from __future__ import annotations

import time
from collections.abc import Callable

from bench.context import Context
from bench.corral_server import CorralServer, job_spec
from bench.model import Result
from bench.workloads.common import Outcome, interleaved, rows, start_server

NO_WORKERS = {"local_workers": "0"}  # nothing runs: the measure is acceptance alone


def submission(server: CorralServer, n: int, bunch: int) -> Callable[[], float]:
    def once() -> float:
        jobs = [job_spec(i, ["true"]) for i in range(1, n + 1)]
        with server.client() as c:
            t0 = time.perf_counter()
            batch_id = server.submit_bunches(c, jobs, bunch=bunch)  # returns once commit answered 200
            elapsed = time.perf_counter() - t0
            status = server.batch(c, batch_id)
        if status["n_jobs"] != n or not status["closed"]:
            raise RuntimeError(f"batch {batch_id}: n_jobs={status['n_jobs']} closed={status['closed']}")
        return elapsed

    return once


def run(ctx: Context) -> list[Result]:
    s = ctx.sizes
    system = "Corral (SQLite)"
    try:
        server = start_server(ctx, "w2", dict(NO_WORKERS))
        outcomes = interleaved(ctx, "W2", {system: submission(server, s.w2_jobs, s.w2_bunch)}, s.repeats)
        server.stop()
    except Exception as exc:
        outcomes = {system: Outcome(error=f"{type(exc).__name__}: {exc}"[:400])}
    note = (f"{s.w2_jobs:,} jobs: create + {s.w2_jobs // s.w2_bunch} bunches of {s.w2_bunch:,} + commit, "
            "JSON encoding included; no workers")
    return rows("W2", "batch accepted", "s", outcomes, notes={system: note}, higher_is_better=False)
