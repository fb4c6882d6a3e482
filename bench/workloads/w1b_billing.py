"""W1B: what the billing ledger costs — W1's no-op throughput with the ledger on (site rates, accrual
every second) and off (`[billing] enabled = false`), side by side in the same run, on both stores."""

from __future__ import annotations

import json

from bench.context import Context
from bench.corral_server import CorralServer
from bench.model import Result
from bench.workloads.common import Outcome, interleaved, rows, start_server
from bench.workloads.w1_throughput import NOOP_WORKER, throughput

RATES = {"accrual_interval": 1.0, "site": {"cpu_core_hour": 0.04, "memory_gib_hour": 0.005}}
SYSTEMS = {  # name -> (PostgreSQL?, ledger on?)
    "Corral (SQLite), ledger off": (False, False),
    "Corral (SQLite), ledger on": (False, True),
    "Corral (PostgreSQL), ledger off": (True, False),
    "Corral (PostgreSQL), ledger on": (True, True),
}


def run(ctx: Context) -> list[Result]:
    n = ctx.sizes.w1_jobs
    servers: dict[str, CorralServer] = {}
    failures: dict[str, Outcome] = {}
    for system, (postgres, ledger) in SYSTEMS.items():
        billing = dict(RATES) if ledger else {"enabled": False}
        settings = {**NOOP_WORKER, "billing": json.dumps(billing)}
        try:
            servers[system] = start_server(ctx, "w1b", settings, postgres=postgres)
        except Exception as exc:
            failures[system] = Outcome(error=f"{type(exc).__name__}: {exc}"[:400])
            ctx.log(f"W1B {system}: could not start: {failures[system].error}")
    runs = {s: throughput(srv, n) for s, srv in servers.items()}
    outcomes = interleaved(ctx, "W1B", runs, ctx.sizes.repeats)
    for server in servers.values():
        server.stop()
    outcomes.update(failures)
    note = f"W1's {n:,} no-op jobs; ratio: ledger on / off on the same store"
    return rows("W1B", "throughput", "jobs/s", {s: outcomes[s] for s in SYSTEMS},
                notes=dict.fromkeys(SYSTEMS, note), higher_is_better=True)
