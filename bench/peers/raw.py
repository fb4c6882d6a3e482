"""The machine's raw process spawn rate: `seq N | xargs -P <cores> -n1 true`."""

from __future__ import annotations

import subprocess
import time

from bench.model import BenchError
from bench.paths import cores


def run_true(n: int) -> float:
    numbers = "".join(f"{i}\n" for i in range(n)).encode()
    t0 = time.perf_counter()
    done = subprocess.run(["xargs", "-P", str(cores()), "-n1", "true"], input=numbers, capture_output=True)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise BenchError(f"xargs exited {done.returncode}: {done.stderr.decode()[-200:]}")
    return elapsed
