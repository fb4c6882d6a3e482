"""SQL statements, commits and server CPU per job for N `true` jobs, and the slot timeline from the store:

    python -m bench.sql_per_job --jobs 400 --runtime host|process|noop [--postgres] [--top 25]

The server runs under bench.sql_probe (every statement counted by a SQLAlchemy listener), with one local
worker on all cores, as bench.cpu_per_job. Counts are load-insensitive except where the number of ticks
depends on timing (more, smaller ticks when the machine is busy); the timeline (assigned -> started, a
freed slot's wait for its next job) is wall time: noise under load. The status polls of this script (one
every 0.5 s) are in the figures, as in bench.cpu_per_job.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sqlite3
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import psutil

from bench.corral_server import CorralServer, fresh_database, job_spec, postgres_start
from bench.paths import cores
from bench.workloads.common import CORRAL_JOB_CPU, process_worker_settings


def _counts(server: CorralServer) -> dict[str, Any]:
    assert server.proc is not None
    out = server.home / "sql_counts.json"
    before = out.stat().st_mtime_ns if out.exists() else 0
    os.kill(server.proc.pid, signal.SIGUSR1)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if out.exists() and out.stat().st_mtime_ns != before:
            try:
                return dict(json.loads(out.read_text()))
            except json.JSONDecodeError:
                pass
        time.sleep(0.02)
    raise RuntimeError("the server did not write its SQL counts")


def _diff(a: dict[str, int], b: dict[str, int]) -> dict[str, int]:
    return {k: v - a.get(k, 0) for k, v in b.items() if v - a.get(k, 0)}


def _attempt_times(server: CorralServer, batch_id: int) -> list[tuple[float, float | None, float]]:
    query = ("select time_assigned, time_started, time_ended from attempts where batch_id = {} "
             "order by time_assigned")
    if server.database_url:
        import asyncpg  # type: ignore[import-untyped]

        async def fetch() -> list[Any]:
            conn = await asyncpg.connect(server.database_url.replace("+asyncpg", ""))
            try:
                return list(await conn.fetch(query.format("$1"), batch_id))
            finally:
                await conn.close()

        return [tuple(r) for r in asyncio.run(fetch())]  # type: ignore[misc]
    db = sqlite3.connect(server.home / "corral.db")
    try:
        return db.execute(query.format("?"), (batch_id,)).fetchall()
    finally:
        db.close()


def _timeline(times: list[tuple[float, float | None, float]]) -> None:
    import bisect

    started = [(s - a) for a, s, _e in times if s is not None]
    assigns = sorted(a for a, _s, _e in times)
    ends = sorted(e for _a, _s, e in times)
    span = max(ends) - min(assigns)
    busy = sum(e - a for a, _s, e in times) / span
    waits = []
    for a in assigns[len(assigns) // 10:]:
        i = bisect.bisect_left(ends, a)
        if i:
            waits.append(a - ends[i - 1])
    print(f"  slots busy on average (assigned..ended): {busy:.2f}")
    if started:
        print(f"  assigned -> started: mean {1000 * statistics.mean(started):.1f} ms, "
              f"p50 {1000 * statistics.median(started):.1f} ms")
    if waits:
        print(f"  assigned - latest earlier end: mean {1000 * statistics.mean(waits):.1f} ms, "
              f"p50 {1000 * statistics.median(waits):.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=400)
    parser.add_argument("--runtime", default="host")
    parser.add_argument("--postgres", action="store_true")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a server setting (CORRAL_<KEY>), e.g. commit_interval=0")
    args = parser.parse_args()
    settings = process_worker_settings() | {"local_worker_runtime": args.runtime}
    if args.runtime == "host":
        settings["jobs"] = json.dumps({"allow_host_runtime": True})
    settings.update(kv.split("=", 1) for kv in args.set)
    probe = Path(__file__).resolve().parent / "sql_probe.py"  # by path: the server's PYTHONPATH is src/
    os.environ["CORRAL_BENCH_SERVER_CMD"] = f"{sys.executable} {probe} server"
    url = fresh_database(postgres_start()[0]) if args.postgres else None
    with CorralServer(f"sql-{args.runtime}", settings, database_url=url) as server:
        assert server.proc is not None
        deadline = time.monotonic() + 60
        while not [p for p in server.worker_pids() if p != server.proc.pid] and time.monotonic() < deadline:
            time.sleep(0.2)
        with server.client() as c:
            warm = [job_spec(i, ["true"], cpu=CORRAL_JOB_CPU) for i in range(1, 21)]
            server.run_batch(c, warm, timeout=120, poll=0.5, bunches=True)
            srv = psutil.Process(server.proc.pid)
            c0, t0 = _counts(server), srv.cpu_times()
            load = os.getloadavg()[0]
            jobs = [job_spec(i, ["true"], cpu=CORRAL_JOB_CPU) for i in range(1, args.jobs + 1)]
            seconds = server.run_batch(c, jobs, timeout=120 + args.jobs, poll=0.5, bunches=True)
            t1 = srv.cpu_times()
            c1 = _counts(server)
        n = args.jobs
        stmts, rows = _diff(c0["statements"], c1["statements"]), _diff(c0["rows"], c1["rows"])
        commits = c1["commits"] - c0["commits"]
        store = "PostgreSQL" if args.postgres else "SQLite"
        print(f"runtime={args.runtime} store={store} jobs={n} cores={cores()} load1={load:.1f}")
        print(f"  server+driver CPU per job: {1000 * (t1.user + t1.system - t0.user - t0.system) / n:.2f} ms")
        print(f"  statements per job: {sum(stmts.values()) / n:.2f}  "
              f"(parameter rows {sum(rows.values()) / n:.2f})  commits per job: {commits / n:.3f}")
        for name, label in (("tick", "tick"), ("report", "events until durable (report)")):
            ms = sorted(1000 * t for t in c1["timings"][name][len(c0["timings"][name]):])
            if ms:
                print(f"  {label}: n={len(ms)} mean {statistics.mean(ms):.1f} ms, "
                      f"p50 {ms[len(ms) // 2]:.1f} ms, p90 {ms[int(0.9 * len(ms))]:.1f} ms")
        http = _diff(c0["requests"], c1["requests"])
        print(f"  HTTP requests per job: {sum(http.values()) / n:.3f} "
              + ", ".join(f"{k}: {v / n:.3f}" for k, v in sorted(http.items(), key=lambda kv: -kv[1])))
        print(f"  wall: {seconds:.2f} s = {n / seconds:.1f} jobs/s (noise under load)")
        _timeline(_attempt_times(server, 2))
        for shape, k in sorted(stmts.items(), key=lambda kv: -kv[1])[: args.top]:
            print(f"    {k / n:7.3f}/job  ({rows[shape] / n:6.2f} rows)  {shape}")


if __name__ == "__main__":
    main()
