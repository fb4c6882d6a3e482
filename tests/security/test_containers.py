"""Jobs with an image on an oci worker: the container reaches no secret, no host loopback, no remount.

The container's processes are not yet in a user namespace (see docs/containers.md): these attacks are
blocked by the container's own root, the missing admin capabilities, the seccomp filter and the network.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.acceptance.harness import RunningServer, job, worker_processes
from tests.containers.conftest import Registry, image_layout, registry, test_image  # noqa: F401
from tests.security.conftest import new_user, start_server
from tests.security.test_network import Listener


@pytest.fixture(scope="module")
def oci_server(tmp_path_factory: pytest.TempPathFactory, registry: Registry) -> Iterator[RunningServer]:  # noqa: F811
    home = tmp_path_factory.mktemp("security-oci") / "home"
    running = start_server(home, local_worker_runtime="oci", images=registry.images_setting())
    yield running
    running.stop()


def _image_job(command: str, image: str, **extra: Any) -> dict[str, Any]:
    spec = job(command, 1, **extra)
    spec["process"]["image"] = image
    return spec


def test_an_image_job_reaches_no_secret_no_loopback_and_cannot_remount(
    oci_server: RunningServer, test_image: str  # noqa: F811
) -> None:
    user = new_user(oci_server)
    listener = Listener()
    marker = f"corral-attack-{uuid.uuid4().hex}"
    home = oci_server.home
    tokens = json.loads((home / "tokens.json").read_text())
    [worker] = worker_processes(home)
    script = (
        f"cat {home}/tokens.json; ls {home} && echo LISTED-HOME; "
        f"mount -o remount,rw / && echo REMOUNTED; mount -t tmpfs none /mnt && echo MOUNTED; "
        f"echo x > /proc/sysrq-trigger && echo SYSRQ; "
        f"cat /proc/{worker.pid}/environ && echo WORKER-ENV; "
        f"timeout 3 nc 127.0.0.1 {listener.port} </dev/null && echo REACHED; "
        "grep -E '^Seccomp:' /proc/self/status; true"
    )
    try:
        batch_id = oci_server.submit([_image_job(script, test_image)], token=user.token)
        oci_server.wait(batch_id)
        with oci_server.client(user.token) as c:
            status = c.get(f"/api/v1/batches/{batch_id}/jobs/1").json()
            log = c.get(f"/api/v1/batches/{batch_id}/jobs/1/log/main").text
    finally:
        listener.close()
    assert status["state"] == "Success", (status, log)
    for success in ("LISTED-HOME", "REMOUNTED", "MOUNTED", "SYSRQ", "WORKER-ENV", "REACHED"):
        assert success not in log, log
    assert tokens["admin_token"] not in log and tokens["token"] not in log
    assert "Seccomp:\t2" in log
    assert listener.connections == 0
    assert not Path("/mnt", marker).exists()
