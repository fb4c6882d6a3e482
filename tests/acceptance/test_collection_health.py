"""A provider that cannot bring instances up (real sshd: a wrong port, a key it does not accept) is
recorded on the pool and shown to the user whose jobs wait; retries back off exponentially, the pool
is marked failing, and each distinct failure is logged once."""

from __future__ import annotations

import json
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

from tests.acceptance.harness import RunningServer, job
from tests.acceptance.sshbed import SshTestbed
from tests.acceptance.test_ssh_pools import pool, serve, store
from tests.cli_support import corral_env, run_corral


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens there once the socket is closed


def _pools(server: RunningServer) -> dict[str, dict[str, Any]]:
    out = run_corral(["pool", "list", "--json"], env=corral_env(server.home), expect=0).stdout
    return {p["name"]: p for p in json.loads(out)}


def _attempts(server: RunningServer, collection: str) -> int:
    return int(store(server, "SELECT count(*) FROM instances WHERE collection = ?", collection)[0][0])


def test_failing_ssh_pools_back_off_are_marked_failing_and_explain_waiting_jobs(
    start_server: Any, tmp_path: Path, ssh_testbed: SshTestbed
) -> None:
    stranger = tmp_path / "stranger_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(stranger)], check=True)
    unknown = tmp_path / "empty_known_hosts"
    unknown.write_text("")
    server = serve(start_server, tmp_path, [
        pool("badport", [ssh_testbed.loopback_host("nowhere", cores=2, memory="1Gi", port=_closed_port())]),
        pool("badkey", [ssh_testbed.loopback_host("locked", cores=2, memory="1Gi", key=str(stranger))]),
        pool("hostkey", [ssh_testbed.loopback_host("unknown", cores=2, memory="1Gi",
                                                   known_hosts=str(unknown))]),
    ], pool="badport")
    batch_id = server.submit(
        [job("true", 1, pool="badport"), job("true", 2, pool="badkey"), job("true", 3, pool="hostkey")]
    )
    started = time.monotonic()

    deadline = started + 90
    while time.monotonic() < deadline:
        pools = _pools(server)
        if all(pools[name]["health"] == "failing" for name in ("badport", "badkey")):
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"pools not marked failing: {pools}\n{server.log_tail()}")
    elapsed = time.monotonic() - started
    assert "unreachable" in pools["badport"]["last_error"]
    assert "127.0.0.1" in pools["badport"]["last_error"]
    assert "unreachable" in pools["badkey"]["last_error"]
    assert pools["badport"]["n_failures"] >= 4 and pools["badport"]["jobs_ready"] == 1
    # A host key that is not known says which option to set.
    hostkey_error = pools["hostkey"]["last_error"] or ""
    assert f"its host key is not in {unknown}" in hostkey_error and "known_hosts = " in hostkey_error

    # Backoff: delays of 1, 2, 4, 8 … seconds. Without it the autoscaler tried once a second.
    time.sleep(6)
    elapsed = time.monotonic() - started
    for name in ("badport", "badkey"):
        tries = _attempts(server, name)
        assert 4 <= tries <= 4 + int(elapsed).bit_length(), (name, tries, elapsed)
    # Each distinct failure is logged once, however often it recurs.
    log = server.log.read_text(errors="replace")
    assert log.count("pool badport cannot bring up instances") == 1, log[-3000:]
    assert log.count("pool badport is failing") == 1

    # The user whose job waits sees why, in the CLI.
    env = corral_env(server.home)
    jobs = run_corral(["batch", "jobs", str(batch_id)], env=env, expect=0).stdout
    assert "waits for pool badport, which cannot bring up instances (failing" in jobs
    got = run_corral(["job", "get", str(batch_id), "2"], env=env, expect=0).stdout
    assert "waiting: waits for pool badkey" in got
    listed = run_corral(["pool", "list"], env=env, expect=0).stdout
    assert "failing" in listed and "pool badport (failing" in listed
    listing = json.loads(run_corral(["instance", "list", "--ended", "3", "--json"], env=env, expect=0).stdout)
    # Live instances are listed too: a retry may be pending right now. The ended ones say why they ended.
    ended = [i for i in listing if i["state"] not in ("pending", "active")]
    assert ended and all("could not be created" in (i["end_reason"] or "") for i in ended), listing
