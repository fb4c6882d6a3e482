"""The same attacks through a worker the server started over SSH (a real sshd on loopback)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

from tests.acceptance.conftest import ssh_testbed, start_server  # noqa: F401 - fixtures
from tests.acceptance.sshbed import SshTestbed
from tests.acceptance.test_ssh_pools import pool, serve
from tests.security.conftest import new_user
from tests.security.test_network import Listener


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
        "for p in /proc/[0-9]*; do tr '\\0' '\\n' < $p/environ 2>/dev/null; done | grep -c CORRAL_WORKER; "
        f"timeout 3 bash -c 'echo > /dev/tcp/127.0.0.1/{listener.port}' 2>/dev/null && echo REACHED; true"
    )
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
    assert status["state"] == "Success", (status, log, server.log_tail())
    lines = log.split()
    assert lines[0] != "0", log
    assert "CapEff:" in lines and lines[lines.index("CapEff:") + 1] == "0000000000000000", log
    assert "NoNewPrivs:" in lines and lines[lines.index("NoNewPrivs:") + 1] == "1", log
    assert "Seccomp:" in lines and lines[lines.index("Seccomp:") + 1] == "2", log
    for success in ("READ-SHADOW", "WROTE-ETC", "REMOUNTED", "REACHED"):
        assert success not in log, log
    assert tokens["admin_token"] not in log and tokens["token"] not in log
    assert not Path("/etc", marker).exists()
    assert listener.connections == 0
