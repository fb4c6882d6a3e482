"""The machine's raw process spawn rate: `seq N | xargs -P <cores> -n1 true`; and the same through the
bubblewrap sandbox Corral's process runtime builds (its floor: what isolation alone costs per job)."""

from __future__ import annotations

import subprocess
import time

from bench.model import BenchError
from bench.paths import cores


def run_true(n: int, *, sandboxed: bool = False) -> float:
    numbers = "".join(f"{i}\n" for i in range(n)).encode()
    prefix = sandbox_prefix() if sandboxed else []
    t0 = time.perf_counter()
    done = subprocess.run(
        ["xargs", "-P", str(cores()), "-n1", *prefix, "true"], input=numbers, capture_output=True
    )
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise BenchError(f"xargs exited {done.returncode}: {done.stderr.decode()[-200:]}")
    return elapsed


def sandbox_prefix() -> list[str]:
    """bwrap with the process runtime's own root layout and namespaces (no cgroups, no /io)."""
    from corral.runtimes.sandbox import find_bwrap, root_layout

    return [find_bwrap(), *root_layout(), "--tmpfs", "/tmp", "--unshare-pid", "--unshare-ipc",
            "--die-with-parent", "--new-session", "--"]
