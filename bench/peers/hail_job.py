"""Run inside the peers venv: a batch with hailtop.batch's LocalBackend; prints the seconds it took.

Usage: python hail_job.py (true N | dag FANOUT) TMPDIR
"""

from __future__ import annotations

import sys
import time

import hailtop.batch as hb  # type: ignore[import-not-found]  # the peers venv only


def main() -> None:
    shape, n, tmp = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    t0 = time.perf_counter()
    b = hb.Batch(name=f"bench-{shape}", backend=hb.LocalBackend(tmp_dir=tmp))
    if shape == "true":
        for i in range(n):
            b.new_job(f"true-{i}").command("true")
    else:
        root = b.new_job("root")
        root.command("true")
        mids = []
        for i in range(n):
            j = b.new_job(f"mid-{i}").depends_on(root)
            j.command("true")
            mids.append(j)
        sink = b.new_job("sink").depends_on(*mids)
        sink.command("true")
    b.run()  # raises if a job failed
    print(f"{time.perf_counter() - t0:.6f}")


if __name__ == "__main__":
    main()
