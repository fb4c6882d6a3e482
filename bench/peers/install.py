"""The peers' Python packages (bench/requirements.txt) in their own venv, installed once and reused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from bench.context import Context
from bench.model import BenchError
from bench.paths import BENCH, PEERS_VENV

REQUIREMENTS = BENCH / "requirements.txt"
STAMP = PEERS_VENV / ".bench-requirements"


def peers_python(ctx: Context) -> Path:
    """The peers venv's python, after installing the pinned requirements if they changed."""
    return ctx.shared("peers-venv", lambda: _install(ctx))


def _install(ctx: Context) -> Path:
    python = PEERS_VENV / "bin" / "python"
    wanted = REQUIREMENTS.read_text()
    if python.exists() and STAMP.exists() and STAMP.read_text() == wanted:
        return python
    ctx.log(f"installing peers from {REQUIREMENTS.name} into {PEERS_VENV} (once; hail is large)")
    if not python.exists():
        _run([sys.executable, "-m", "venv", str(PEERS_VENV)])
    _run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)])
    STAMP.write_text(wanted)
    return python


def _run(cmd: list[str]) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(cmd[:4])} failed: {done.stderr.strip()[-300:]}")
