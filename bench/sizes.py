"""How big each workload is and how often it repeats: the full run and the quick (< 3 minutes) run."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Sizes:
    repeats: int  # runs per workload and system; the table shows the median and min-max
    w1_jobs: int
    w2_jobs: int
    w3_jobs: int
    w4_fanout: int
    w5_runs: int
    w6_jobs: int
    w7_jobs: int
    w7_users: int = 1_000
    w7_instances: int = 1_000
    w2_bunch: int = 10_000
    w6_repeats: int = 2  # a million-job submission per repeat
    w7_repeats: int = 3
    w9_jobs: int = 1_000
    w9_runs: int = 30
    w10_fanout: int = 10_000  # the same in quick mode: the size is the point
    w10_repeats: int = 2
    w11_rows: int = 1_000_000  # parameter sweep rows, 100 per chunk (the same in quick mode)
    w11_repeats: int = 2
    quick: bool = False


FULL = Sizes(repeats=3, w1_jobs=20_000, w2_jobs=100_000, w3_jobs=2_000, w4_fanout=500, w5_runs=50,
             w6_jobs=1_000_000, w7_jobs=1_000_000)
# Quick mode must stay under 3 minutes with W8 and W9 included (SLURM's 1 s per job bounds W5/W9 runs).
QUICK = Sizes(repeats=2, w1_jobs=5_000, w2_jobs=100_000, w3_jobs=200, w4_fanout=100, w5_runs=8,
              w6_jobs=100_000, w7_jobs=1_000_000, w6_repeats=1, w7_repeats=2, w9_jobs=200, w9_runs=6,
              w10_repeats=1, w11_repeats=1,
              quick=True)
