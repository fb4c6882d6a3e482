"""The worker process itself: signals and an unreachable driver (no fake server involved)."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
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
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    try:
        # Signal once it is retrying activation against a closed port (its handlers are in place by
        # then), however long its imports take on a loaded machine.
        deadline = time.monotonic() + 60
        while not any("driver unavailable" in line for line in lines):
            assert proc.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.05)
        proc.send_signal(sig)
        proc.wait(timeout=10)
        reader.join(timeout=10)
        out = "".join(lines)
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
