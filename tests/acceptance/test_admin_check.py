"""`corral admin check` against a real server: all invariants hold after a DAG ran; a corrupted counter
is reported and the command exits 1."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from typing import Any

from tests.acceptance.harness import job


def _admin_check(server: Any) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update({"CORRAL_HOME": str(server.home), "COLUMNS": "200"})
    return subprocess.run([sys.executable, "-m", "corral", "--url", server.url, "admin", "check"],
                          env=env, capture_output=True, text=True, timeout=60)


def test_admin_check_passes_then_catches_a_corrupted_counter(start_server: Any) -> None:
    server = start_server()
    batch_id = server.submit([job("true", 1), job("exit 3", 2, [1]), job("true", 3, [2])])
    status = server.wait(batch_id)
    assert (status["n_succeeded"], status["n_failed"], status["n_cancelled"]) == (1, 1, 1)
    ok = _admin_check(server)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "all invariants hold (store, driver)" in ok.stdout
    with sqlite3.connect(server.home / "corral.db") as db:
        db.execute("UPDATE batches SET n_cancelled = n_cancelled + 1 WHERE id = ?", (batch_id,))
    broken = _admin_check(server)
    assert broken.returncode == 1, broken.stdout + broken.stderr
    assert "batch counters" in broken.stdout and f"batch {batch_id}: n_cancelled is 2" in broken.stdout
    assert "Traceback" not in broken.stdout + broken.stderr
    with sqlite3.connect(server.home / "corral.db") as db:  # put it back: the fixture checks again
        db.execute("UPDATE batches SET n_cancelled = n_cancelled - 1 WHERE id = ?", (batch_id,))
