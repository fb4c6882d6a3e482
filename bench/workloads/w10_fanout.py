"""W10: fan-out 1 → N (10,000) of no-op jobs, the children appended in a second update that names the
root by its absolute id (as a client that streams its DAG does); the root's completion makes N children
Ready in one cascade.

It measures the parent bookkeeping at commit and in the cascade on each store (the recount at commit
was quadratic on SQLite), not job execution: a no-op worker advertising 1,000 cores, as in W1.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

from bench.context import Context
from bench.corral_server import CorralServer, all_succeeded, job_spec
from bench.model import Result
from bench.workloads.common import Outcome, interleaved, rows, start_server
from bench.workloads.w1_throughput import BACKENDS, NOOP_WORKER


def children(fanout: int) -> list[dict[str, Any]]:
    return [{**job_spec(i, ["true"]), "absolute_parent_ids": [1]} for i in range(1, fanout + 1)]


def corral_fanout(server: CorralServer, fanout: int) -> Callable[[], float]:
    def once() -> float:
        with server.client(timeout=600) as c:
            t0 = time.perf_counter()
            batch_id = server.submit_fast(c, [job_spec(1, ["sleep", "1"])])
            r = c.post(f"/api/v1/batches/{batch_id}/updates/create",
                       json={"token": uuid.uuid4().hex, "n_jobs": fanout})
            r.raise_for_status()
            update_id = r.json()["update_id"]
            bunch = children(fanout)
            for start in range(0, fanout, 5_000):
                c.post(f"/api/v1/batches/{batch_id}/updates/{update_id}/jobs/create",
                       json=bunch[start:start + 5_000]).raise_for_status()
            c.patch(f"/api/v1/batches/{batch_id}/updates/{update_id}/commit").raise_for_status()
            # The commit and the root's cascade are single steps with nothing to see: allow minutes.
            status = server.wait(c, batch_id, timeout=300 + fanout / 20, stall=300)
            elapsed = time.perf_counter() - t0
        all_succeeded(status)
        return elapsed

    return once


def run(ctx: Context) -> list[Result]:
    fanout = ctx.sizes.w10_fanout
    runs: dict[str, Callable[[], float]] = {}
    failures: dict[str, Outcome] = {}
    servers: list[CorralServer] = []
    for system, postgres in BACKENDS.items():
        try:
            server = start_server(ctx, "w10", dict(NOOP_WORKER), postgres=postgres)
        except Exception as exc:
            failures[system] = Outcome(error=f"{type(exc).__name__}: {exc}"[:400])
            ctx.log(f"W10 {system}: could not start: {failures[system].error}")
            continue
        servers.append(server)
        runs[system] = corral_fanout(server, fanout)
    outcomes = interleaved(ctx, "W10", runs, ctx.sizes.w10_repeats)
    for server in servers:
        server.stop()
    outcomes.update(failures)
    note = (f"1 root, then {fanout:,} children naming it in a second update (no-op runtime); "
            "submit to last completion")
    return rows("W10", f"fan-out 1→{fanout:,}", "s", {s: outcomes[s] for s in BACKENDS},
                notes=dict.fromkeys(BACKENDS, note), higher_is_better=False)
