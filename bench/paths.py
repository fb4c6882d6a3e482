"""Where the benchmark keeps its files, and small process helpers shared by workloads and peers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
RESULTS = BENCH / "results"
VENV = ROOT / ".venv"
PEERS_VENV = VENV / "bench-peers"  # hail pins older sqlalchemy/rich/typer than Corral: own venv
WORK = Path(os.environ.get("CORRAL_BENCH_DIR", "/tmp/corral-bench"))


def cores() -> int:
    return len(os.sched_getaffinity(0))


def kill_group(proc: subprocess.Popen[bytes], timeout: float = 20.0) -> None:
    """Stop a process started with start_new_session=True and everything it started."""
    if proc.poll() is not None:
        _signal_group(proc.pid, signal.SIGKILL)
        return
    _signal_group(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)
    _signal_group(proc.pid, signal.SIGKILL)
    if proc.poll() is None:
        proc.wait(timeout=10)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
