"""W12's merge, in a fresh process so its peak RSS is its own: prints {seconds, rows, peak_rss_mib}.

python -m bench.workloads.w12_merge corral URL TOKEN NAME STORE
python -m bench.workloads.w12_merge pyarrow FILES_JSON TARGET_DIR
"""

from __future__ import annotations

import json
import resource
import sys
import time


def main(argv: list[str]) -> int:
    mode = argv[0]
    if mode == "corral":
        import corral
        from corral.sweeps.sweep import Sweep

        url, token, name, store = argv[1:5]
        backend = corral.ServiceBackend(url, token)
        t0 = time.perf_counter()
        sweep = Sweep.load(name, backend=backend, results_url=store)
        report = sweep.merge()
        seconds = time.perf_counter() - t0
        rows = report.rows
        if report.problems:
            print(f"{len(report.problems)} problems, e.g. {next(iter(report.problems.values()))}",
                  file=sys.stderr)
            return 1
    else:
        import pyarrow.dataset as ds

        files, target = json.loads(open(argv[1]).read()), argv[2]  # noqa: SIM115
        t0 = time.perf_counter()
        ds.write_dataset(ds.dataset(files, format="parquet"), target, format="parquet")
        seconds = time.perf_counter() - t0
        rows = ds.dataset(target, format="parquet").count_rows()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"seconds": seconds, "rows": rows, "peak_rss_mib": peak}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
