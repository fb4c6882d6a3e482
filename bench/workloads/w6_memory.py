"""W6: server memory (RSS) with 1,000,000 queued jobs (no workers, so every job stays queued)."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from bench.context import Context
from bench.corral_server import job_spec
from bench.model import Result
from bench.workloads.common import Outcome, interleaved, rows, start_server

MIB = 1024 * 1024
PER_BATCH = 100_000


def queued_rss(ctx: Context, n: int, bunch: int, idle_mib: list[float]) -> Callable[[], float]:
    def once() -> float:
        server = start_server(ctx, "w6", {"local_workers": "0"})
        try:
            idle = server.rss_bytes()
            idle_mib.append(idle / MIB)
            with server.client(timeout=300) as c:
                for start in range(0, n, PER_BATCH):
                    size = min(PER_BATCH, n - start)
                    server.submit_bunches(c, [job_spec(i, ["true"]) for i in range(1, size + 1)], bunch=bunch)
            time.sleep(2.0)  # let the driver take the committed jobs into its queues
            rss = server.rss_bytes()
            ctx.log(f"W6: RSS idle {idle / MIB:.0f} MiB, with {n:,} queued jobs {rss / MIB:.0f} MiB")
            return rss / MIB
        finally:
            server.stop()

    return once


def run(ctx: Context) -> list[Result]:
    s = ctx.sizes
    system = "Corral (SQLite)"
    idle: list[float] = []
    runs = {system: queued_rss(ctx, s.w6_jobs, s.w2_bunch, idle)}
    outcomes: dict[str, Outcome] = interleaved(ctx, "W6", runs, s.w6_repeats)
    note = f"{s.w6_jobs:,} queued jobs in batches of {PER_BATCH:,}; RSS of the server process"
    if idle:
        note += f" (idle server: {statistics.median(idle):.0f} MiB)"
    samples = outcomes[system].samples
    if s.w6_jobs < 1_000_000 and samples and idle:
        # No extrapolation: RSS does not grow linearly (the full run measured 543 MiB at 1,000,000
        # where a straight line through the quick run predicted ~1,500).
        note += f"; SCALED quick run ({s.w6_jobs:,} jobs, not 1,000,000), target not judged: run `make bench`"
    return rows("W6", "server RSS", "MiB", outcomes, notes={system: note}, higher_is_better=False)
