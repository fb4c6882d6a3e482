"""`python -m bench.run [--quick] [--only W1,W3]`: every workload against Corral and the peers, one table.

Writes bench/results/latest.json (a list of {workload, system, metric, value, unit, ...}) and prints a
markdown table. Exits non-zero only when a Corral row failed; a peer that could not run is a row with
its error.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import sys
import time
from collections.abc import Callable
from types import FrameType

from bench.context import Context
from bench.model import Result, failed
from bench.paths import RESULTS, cores
from bench.report import judged, table
from bench.sizes import FULL, QUICK
from bench.workloads import (
    w1_throughput,
    w1b_billing,
    w2_submission,
    w3_true,
    w4_dag,
    w5_latency,
    w6_memory,
    w7_decision,
    w8_container,
    w9_slurm_pool,
    w10_fanout,
    w11_pages,
    w12_sweep,
)

WORKLOADS: dict[str, Callable[[Context], list[Result]]] = {
    "W1": w1_throughput.run, "W2": w2_submission.run, "W3": w3_true.run, "W4": w4_dag.run,
    "W5": w5_latency.run, "W6": w6_memory.run, "W7": w7_decision.run, "W8": w8_container.run,
    "W9": w9_slurm_pool.run, "W10": w10_fanout.run, "W11": w11_pages.run, "W12": w12_sweep.run,
    "W1B": w1b_billing.run,
}


def parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smaller sizes and fewer repeats (< 3 minutes)")
    p.add_argument("--only", default="", help="comma-separated workloads, e.g. W1,W3")
    args = p.parse_args(argv)
    args.only = [w.strip().upper() for w in args.only.split(",") if w.strip()] or list(WORKLOADS)
    unknown = [w for w in args.only if w not in WORKLOADS]
    if unknown:
        p.error(f"unknown workload(s) {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}")
    return args


def _terminate(signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    signal.signal(signal.SIGTERM, _terminate)
    ctx = Context(QUICK if args.quick else FULL)
    results: list[Result] = []
    try:
        for name in args.only:
            ctx.log(f"--- {name}")
            try:
                results += WORKLOADS[name](ctx)
            except Exception as exc:  # a bug in the harness or Corral down: keep going with the others
                ctx.log(f"{name} failed: {type(exc).__name__}: {exc}")
                results.append(failed(name, "Corral", "run", "", f"{type(exc).__name__}: {exc}"[:400]))
    finally:
        ctx.log("stopping what the run started")
        ctx.cleanup.close()
    scaled = ctx.sizes.w6_jobs < 1_000_000
    write(results, ctx, args)
    header = (f"Corral bench ({'quick' if args.quick else 'full'}), {time.strftime('%Y-%m-%d %H:%M')}, "
              f"{platform.node()}: {cores()} cores, Python {platform.python_version()}, "
              f"took {time.monotonic() - ctx.started:.0f}s")
    misses = judged(results, "MISSED", scaled_w6=scaled)
    unmeasured = judged(results, "not measured", scaled_w6=scaled)
    text = (f"{header}\n\n{table(results, scaled_w6=scaled)}\n\n"
            f"Targets missed: {', '.join(misses) or 'none'}\n"
            f"Targets not measured (the system failed; see its row): {', '.join(unmeasured) or 'none'}\n")
    (RESULTS / "latest.md").write_text(text)
    print(f"\n{text}")
    corral_failed = [r for r in results if r.error and r.system.startswith("Corral")]
    return 1 if corral_failed else 0


def write(results: list[Result], ctx: Context, args: argparse.Namespace) -> None:
    RESULTS.mkdir(parents=True, exist_ok=True)
    rows = [r.to_json() for r in results]
    for row in rows:
        row["mode"] = "quick" if args.quick else "full"
    tmp = RESULTS / "latest.json.tmp"
    tmp.write_text(json.dumps(rows, indent=1))
    os.replace(tmp, RESULTS / "latest.json")
    ctx.log(f"wrote {RESULTS / 'latest.json'}")


if __name__ == "__main__":
    sys.exit(main())
