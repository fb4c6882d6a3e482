"""Jobs with an image on an oci worker: the container reaches no secret, no host loopback, no remount,
and its root is an unprivileged uid of the host (its own user namespace; runtime-level attacks on the
binds: test_container_userns.py).
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.acceptance.harness import RunningServer, job, worker_processes
from tests.containers.conftest import Registry, image_layout, registry, sleepers, test_image  # noqa: F401
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


def _host_ids(pid: int) -> tuple[list[int], list[int]]:
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    uids = next(line for line in status if line.startswith("Uid:")).split()[1:]
    gids = next(line for line in status if line.startswith("Gid:")).split()[1:]
    return [int(u) for u in uids], [int(g) for g in gids]


def test_an_image_jobs_root_is_an_unprivileged_uid_on_the_host(
    oci_server: RunningServer, test_image: str  # noqa: F811
) -> None:
    user = new_user(oci_server)
    seconds = str(2000 + uuid.uuid4().int % 8000)  # finds the job's process on the host
    script = f"id -u; cat /proc/self/uid_map; exec sleep {seconds}"
    batch_id = oci_server.submit([_image_job(script, test_image)], token=user.token)
    try:
        deadline = time.monotonic() + 120
        while not sleepers(seconds) and time.monotonic() < deadline:
            time.sleep(0.1)
        pids = sleepers(seconds)
        assert pids, oci_server.job(batch_id, 1)
        # The host: the container's root runs as one unprivileged uid/gid, real, effective, saved, fs.
        uids, gids = _host_ids(pids[0])
        assert len(set(uids)) == 1 and len(set(gids)) == 1 and uids[0] >= 0x60000000 and gids[0] > 0, uids
        # Read from the host's namespace, its uid_map says container root is that uid.
        host_view = Path(f"/proc/{pids[0]}/uid_map").read_text().split("\n")[0].split()
        assert host_view == ["0", str(uids[0]), "1"], host_view
    finally:
        with oci_server.client(user.token) as c:
            assert c.patch(f"/api/v1/batches/{batch_id}/cancel").status_code in (200, 204)
    oci_server.wait(batch_id)
    log, deadline = "", time.monotonic() + 60  # a cancelled job's log is uploaded when the worker ends it
    while len(log.splitlines()) < 2 and time.monotonic() < deadline:
        with oci_server.client(user.token) as c:
            r = c.get(f"/api/v1/batches/{batch_id}/jobs/1/log/main")
        log = r.text if r.status_code == 200 else ""
        time.sleep(0.2)
    lines = log.splitlines()
    # Root inside, mapped to that uid.
    assert len(lines) >= 2 and lines[0] == "0" and lines[1].split() == ["0", str(uids[0]), "1"], log
    deadline = time.monotonic() + 60  # the worker kills the container after the batch says cancelled
    while sleepers(seconds) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not sleepers(seconds)
