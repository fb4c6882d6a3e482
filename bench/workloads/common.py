"""Running several systems on the same workload, interleaved repeat by repeat, each failure kept apart."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from bench.context import Context
from bench.corral_server import CorralServer, fresh_database, job_spec, postgres_start, postgres_stop
from bench.model import Result, failed, measured
from bench.paths import cores

GI = "Gi"


@dataclass
class Outcome:
    samples: list[float] = field(default_factory=list)
    error: str = ""


def interleaved(ctx: Context, label: str, systems: dict[str, Callable[[], float]], repeats: int
                ) -> dict[str, Outcome]:
    """Run every system once per repeat (so noise of the machine is spread evenly); a system that fails
    is not run again and keeps its error."""
    out = {name: Outcome() for name in systems}
    for rep in range(repeats):
        for name, run in systems.items():
            if out[name].error:
                continue
            t0 = time.monotonic()
            try:
                value = run()
            except Exception as exc:
                out[name].error = f"{type(exc).__name__}: {exc}"[:400]
                ctx.log(f"{label} {name}: FAILED {out[name].error}")
                continue
            out[name].samples.append(value)
            ctx.log(f"{label} {name} #{rep + 1}: {value:.4g} ({time.monotonic() - t0:.1f}s)")
    return out


def rows(workload: str, metric: str, unit: str, outcomes: dict[str, Outcome], *, notes: dict[str, str],
         higher_is_better: bool) -> list[Result]:
    results = []
    for system, o in outcomes.items():
        if o.error or not o.samples:
            results.append(failed(workload, system, metric, unit, o.error or "no sample"))
        else:
            results.append(measured(workload, system, metric, o.samples, unit, note=notes.get(system, ""),
                                    higher_is_better=higher_is_better))
    return results


def process_worker_settings() -> dict[str, str]:
    """Corral with one local worker running real processes on all the machine's cores."""
    return {"local_workers": "1", "local_worker_cores": str(cores()), "local_worker_memory": f"16{GI}",
            "local_worker_runtime": "process"}


def host_worker_settings() -> dict[str, str]:
    """The same local worker with the `host` runtime (no sandbox; the site's opt-in set)."""
    return process_worker_settings() | {
        "local_worker_runtime": "host", "jobs": '{"allow_host_runtime": true}'
    }


HOST = "Corral (host runtime)"
HOST_NOTE = "host runtime (cgroup limits, kill-the-tree, no sandbox; trusted single-user setups)"
SLOTS_PER_CORE = 4  # Corral jobs ask 0.25 cpu; Snakemake gets --cores 4xcores: same jobs in flight
CORRAL_JOB_CPU = "0.25"


def warm_up(server: CorralServer, jobs: int = 8) -> CorralServer:
    """One small batch, not timed, before a server's samples: its worker active, its first requests and
    code paths behind it. A service is measured warm (as SLURM's daemons are, and W5 does the same); the
    first batch after a server starts is a one-off."""
    batch = [job_spec(i, ["true"], cpu=CORRAL_JOB_CPU) for i in range(1, jobs + 1)]
    with server.client() as c:
        server.run_batch(c, batch, timeout=120)
    return server


def start_server(
    ctx: Context, name: str, settings: dict[str, str], *, postgres: bool = False
) -> CorralServer:
    """A Corral server for one workload (SQLite under its home, or a fresh PostgreSQL database)."""
    url = None
    if postgres:
        dsn, started = ctx.shared("postgres", postgres_start)
        if started:
            ctx.shared("postgres-stop", lambda: ctx.cleanup.callback(postgres_stop))
        url = fresh_database(dsn)
    server = CorralServer(name, settings, database_url=url)
    ctx.cleanup.callback(server.stop)
    server.start()
    store = "PostgreSQL" if postgres else "SQLite"
    ctx.log(f"{name}: corral server at {server.url} ({store}), home {server.home}")
    return server
