"""The worker process itself: signals and an unreachable driver (no fake server involved)."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SCRIPT = (
    "import sys; from pathlib import Path; from corral.worker import run_worker; "
    "run_worker(sys.argv[1], 'agent-test', 'token', runtime=sys.argv[2], work_dir=Path(sys.argv[3]))"
)


def _start(tmp_path: Path, runtime: str = "noop", url: str = "http://127.0.0.1:9") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", SCRIPT, url, runtime, str(tmp_path / "work")],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_worker_that_never_reached_its_driver_exits_cleanly_on_a_signal(
    tmp_path: Path, sig: signal.Signals
) -> None:
    proc = _start(tmp_path)
    try:
        time.sleep(1.5)  # retrying activation against a closed port
        assert proc.poll() is None, proc.communicate()[0]
        proc.send_signal(sig)
        out, _ = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0, out
    assert "driver unavailable" in out  # it kept retrying rather than giving up
    assert (tmp_path / "work" / "jobs").is_dir()  # the scratch layout was prepared


def test_an_unknown_runtime_is_refused_at_start(tmp_path: Path) -> None:
    proc = _start(tmp_path, runtime="nosuch")
    out, _ = proc.communicate(timeout=20)
    assert proc.returncode == 1
    assert "unknown runtime 'nosuch'" in out
