"""The worker's cgroup work for one short job, alone: CPU time per job (load-insensitive).

    python -m bench.cgroup_ops [--jobs 2000]        (root, cgroup v1 or v2)

What a host-runtime worker does with a job's cgroups from its start to its end, with the runtime's own
pool (runtimes/cgroup_pool.py): take one (an idle one renamed, or a new one), ask its thread entry and
procs files, read its processes, usage and OOM kills, give it back (checked clean, its CPU time zeroed).
No process joins it: this measures the bookkeeping, not the kernel's cost of moving one. Five rounds;
the process's CPU time per job, min and median.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from corral.runtimes.cgroup_pool import CgroupPool
from corral.runtimes.cgroups import Limits, detect_cgroups


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=2000)
    args = parser.parse_args()
    cgroups = detect_cgroups(f"bench-cgroup-ops-{os.getpid()}")
    if cgroups is None:
        raise SystemExit("no usable cgroups here (root and a cgroup v1 or v2 hierarchy are needed)")
    pool = CgroupPool(cgroups)
    limits = Limits(memory_bytes=1 << 30, cores_mcpu=250, pids=1000)

    def one_job(i: int) -> None:
        group = pool.take(f"1-{i}-1", limits)
        _ = group.thread_entry, group.procs_files
        group.pids()
        group.usage()
        group.oom_kills()
        if not pool.give_back(group):
            raise SystemExit(f"job cgroup {i} still has processes")

    try:
        for i in range(200):  # warm: the pool fills, code paths are compiled
            one_job(i)
        per_job = []
        for _ in range(5):
            start = time.process_time()
            for i in range(args.jobs):
                one_job(i)
            per_job.append((time.process_time() - start) / args.jobs * 1e6)
    finally:
        pool.close()
        cgroups.remove_base()
    print(f"{cgroups.describe()}")
    low, mid = min(per_job), statistics.median(per_job)
    print(f"cgroup work per job: min {low:.1f} µs, median {mid:.1f} µs of CPU "
          f"({args.jobs} jobs x 5; made {pool.made}, reused {pool.reused})")


if __name__ == "__main__":
    main()
