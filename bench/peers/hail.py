"""Hail Batch's own LocalBackend (hailtop.batch from the pinned `hail`), jobs without an image."""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

from bench.context import Context
from bench.model import BenchError
from bench.paths import WORK
from bench.peers.install import peers_python

SCRIPT = Path(__file__).with_name("hail_job.py")


def _run(ctx: Context, shape: str, n: int, timeout: float) -> float:
    python = peers_python(ctx)
    tmp = WORK / "hail" / uuid.uuid4().hex[:8]
    tmp.mkdir(parents=True)
    done = subprocess.run([str(python), str(SCRIPT), shape, str(n), str(tmp)], capture_output=True, text=True,
                          timeout=timeout, cwd=tmp)
    if done.returncode != 0:
        raise BenchError(f"hailtop.batch LocalBackend failed: {(done.stderr or done.stdout).strip()[-300:]}")
    return float(done.stdout.strip().splitlines()[-1])


def run_true(ctx: Context, n: int) -> float:
    return _run(ctx, "true", n, timeout=120 + n)


def run_dag(ctx: Context, fanout: int) -> float:
    return _run(ctx, "dag", fanout, timeout=120 + fanout)
