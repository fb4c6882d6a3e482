"""Storage and logs bounded: writing past the storage request fails "No space left"; a 200 MB print is cut."""

from __future__ import annotations

import shutil

from tests.acceptance.harness import RunningServer
from tests.security.conftest import Attacker

MiB = 1024 * 1024


def _free_bytes(server: RunningServer) -> int:
    return shutil.disk_usage(server.home).free


def test_writing_past_the_storage_request_fails_with_no_space_left(
    server: RunningServer, attacker: Attacker
) -> None:
    free_before = _free_bytes(server)
    script = (
        "dd if=/dev/zero of=/io/big bs=1M count=200 2>&1 | tail -4; "
        "dd if=/dev/zero of=/tmp/big bs=1M count=200 2>&1 | tail -4; "
        "df -B1 /io /tmp | tail -2; exit 1"
    )
    status, log = attacker.run(script, resources={"cpu": "0.25", "memory": "64Mi", "storage": "64Mi"})
    assert status["state"] == "Failed", status
    assert "No space left on device" in log, log
    reason = status.get("reason") or status.get("error") or ""
    attempt_error = str(status)
    assert "No space left" in reason or "No space left" in attempt_error, status
    # /io and /tmp share the 64 MiB: nowhere near 400 MB reached the host's disk.
    assert _free_bytes(server) > free_before - 128 * MiB


def test_a_200_mb_print_is_capped_on_disk_while_running_and_the_cut_is_marked(
    server: RunningServer, attacker: Attacker
) -> None:
    script = "echo FIRST-LINE; head -c 200000000 /dev/zero | tr '\\0' x; echo; echo LAST-LINE"
    status, log = attacker.run(script)
    assert status["state"] == "Success", status
    assert log.startswith("FIRST-LINE")
    assert log.rstrip().endswith("LAST-LINE")
    assert "[corral: log cut," in log and "bytes dropped here" in log
    assert len(log) < 16 * MiB
    stored = sum(p.stat().st_size for p in (server.home / "logs").rglob("*") if p.is_file())
    assert stored < 32 * MiB
