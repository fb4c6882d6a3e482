"""The same attacks through a worker the server started over SSH (a real sshd on loopback)."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path
from typing import Any

from tests.acceptance.conftest import ssh_testbed, start_server  # noqa: F401 - fixtures
from tests.acceptance.sshbed import SshTestbed
from tests.acceptance.test_ssh_pools import pool, serve
from tests.security.conftest import new_user
from tests.security.test_network import Listener

from corral.runtimes.identity import JOB_UID_BASE


def _worker_tokens() -> set[str]:
    """CORRAL_WORKER_TOKEN of every worker process on this machine (the SSH hosts are this machine)."""
    found = set()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            for item in environ.read_bytes().split(b"\0"):
                if item.startswith(b"CORRAL_WORKER_TOKEN="):
                    found.add(item.partition(b"=")[2].decode(errors="replace"))
        except OSError:
            continue
    return {t for t in found if len(t) >= 8}


def test_an_ssh_workers_job_is_unprivileged_and_reaches_no_secret(
    start_server: Any, tmp_path: Path, ssh_testbed: SshTestbed  # noqa: F811
) -> None:
    hosts = [ssh_testbed.loopback_host("lb1", cores=2, memory="2Gi")]
    server = serve(start_server, tmp_path, [pool("lab", hosts)], pool="lab")
    user = new_user(server)
    tokens = json.loads((server.home / "tokens.json").read_text())
    listener = Listener()
    marker = f"corral-attack-{uuid.uuid4().hex}"
    script = (
        "id -u; grep -E '^(CapEff|NoNewPrivs|Seccomp):' /proc/self/status; "
        f"cat /etc/shadow && echo READ-SHADOW; cat {server.home}/tokens.json; "
        f"echo pwned > /etc/{marker} && echo WROTE-ETC; mount -o remount,rw / && echo REMOUNTED; "
        "echo worker-env=$(for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ 2>/dev/null; done "
        "| grep -c CORRAL_WORKER); "
        "cat /proc/[0-9]*/environ 2>/dev/null | tr '\\0' '\\n' | grep CORRAL_WORKER_TOKEN; "
        f"timeout 3 bash -c 'echo > /dev/tcp/127.0.0.1/{listener.port}' 2>/dev/null && echo REACHED; true"
    )
    worker_tokens: set[str] = set()
    watching = threading.Event()

    def watch() -> None:  # the SSH worker lives only while it has work: collect its token meanwhile
        while not watching.wait(0.2):
            worker_tokens.update(_worker_tokens())

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        spec = {"job_id": 1, "process": {"type": "docker", "command": ["/bin/bash", "-c", script]},
                "resources": {"cpu": "1", "memory": "64Mi"}}
        batch_id = server.submit([spec], token=user.token)
        server.wait(batch_id, timeout=300)
        with server.client(user.token) as c:
            status: dict[str, Any] = c.get(f"/api/v1/batches/{batch_id}/jobs/1").json()
            log = c.get(f"/api/v1/batches/{batch_id}/jobs/1/log/main").text
    finally:
        listener.close()
        watching.set()
        watcher.join(timeout=30)
    assert status["state"] == "Success", (status, log, server.log_tail())
    lines = log.split()
    assert int(lines[0]) >= JOB_UID_BASE, log  # no user namespace here: the job's real uid on the host
    assert "worker-env=0" in lines, log
    # The host: the SSH worker's real token (in its environment, read here as root) is not in the log.
    assert worker_tokens, "no SSH-started worker found on this host"
    assert not any(token in log for token in worker_tokens), log
    assert "CapEff:" in lines and lines[lines.index("CapEff:") + 1] == "0000000000000000", log
    assert "NoNewPrivs:" in lines and lines[lines.index("NoNewPrivs:") + 1] == "1", log
    assert "Seccomp:" in lines and lines[lines.index("Seccomp:") + 1] == "2", log
    for success in ("READ-SHADOW", "WROTE-ETC", "REMOUNTED", "REACHED"):
        assert success not in log, log
    assert tokens["admin_token"] not in log and tokens["token"] not in log
    assert not Path("/etc", marker).exists()
    assert listener.connections == 0
