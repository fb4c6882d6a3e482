"""A job that requests no storage still has bounded /io and /tmp: `[jobs] default_storage`.

Real server, real local workers (process and oci runtimes), a small default (64 MiB) so the test can
fill it: the job fails with the same "No space left" reason as an explicit request, the host's disk
is checked (the volume files' real allocation, all the worker holds on disk), and the pooled volume
a job leaves is empty when the next job borrows it.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.acceptance.harness import RunningServer, job
from tests.containers.conftest import Registry, image_layout, registry, test_image  # noqa: F401
from tests.security.conftest import new_user, start_server

MiB = 1024 * 1024
DEFAULT = 64 * MiB


@pytest.fixture(scope="module", params=["process", "oci"])
def small_default_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, registry: Registry  # noqa: F811
) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp(f"default-storage-{request.param}") / "home"
    settings = {"local_worker_runtime": request.param, "jobs": json.dumps({"default_storage": "64Mi"})}
    if request.param == "oci":
        settings["images"] = registry.images_setting()
    running = start_server(home, **settings)
    yield running
    running.stop()


def _spec(server: RunningServer, command: str, image: str) -> dict[str, Any]:
    spec = job(command, 1, resources={"cpu": "0.25", "memory": "64Mi"})  # no storage request
    if server.env.get("CORRAL_LOCAL_WORKER_RUNTIME") == "oci":
        spec["process"]["image"] = image
    return spec


def _run(server: RunningServer, token: str, command: str, image: str) -> tuple[dict[str, Any], str]:
    batch_id = server.submit([_spec(server, command, image)], token=token)
    server.wait(batch_id, 180)
    with server.client(token) as c:
        status = c.get(f"/api/v1/batches/{batch_id}/jobs/1").json()
        log = c.get(f"/api/v1/batches/{batch_id}/jobs/1/log/main").text
    return status, log


def _allocated(server: RunningServer) -> list[int]:
    """Bytes each pooled volume file really takes on the host's disk."""
    sizes = []
    for volume in _volume_files(server.home):
        try:
            sizes.append(volume.stat().st_blocks * 512)
        except FileNotFoundError:  # destroyed meanwhile
            continue
    return sizes


def _volume_files(home: Path) -> list[Path]:
    return list((home / "worker").glob("*/volumes/*.ext4"))


def test_a_job_without_a_storage_request_cannot_fill_the_host_disk(
    small_default_server: RunningServer, test_image: str  # noqa: F811
) -> None:
    server = small_default_server
    user = new_user(server)
    script = (
        "dd if=/dev/zero of=/io/big bs=1M count=200 2>&1 | tail -4; "
        "dd if=/dev/zero of=/tmp/big bs=1M count=200 2>&1 | tail -4; df -B1 /io | tail -1; "
        "test $(df -B1 /io | tail -1 | awk '{print $2}') -lt 100000000 && echo BOUNDED"
    )
    status, log = _run(server, user.token, script + "; exit 1", test_image)
    assert status["state"] == "Failed", status
    assert "No space left on device" in log and "BOUNDED" in log, log
    reason = status.get("reason") or ""
    assert "No space left" in reason and "default_storage" in reason, status
    # The host: the job's writes went into a 64 MiB volume file, not onto the host's disk.
    sizes = _allocated(server)
    assert sizes, list((server.home / "worker").glob("*/*"))
    assert max(sizes) < DEFAULT + 16 * MiB, sizes
    # Once the volume is back in the pool it is emptied and trimmed: the host's disk gets the blocks back.
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and max(_allocated(server), default=0) > 16 * MiB:
        time.sleep(0.2)
    assert max(_allocated(server), default=0) <= 16 * MiB, _allocated(server)
    # Everything the worker holds on the host's disk (scratch, pooled volumes): about one volume's worth.
    # (Free space on this shared machine moves with other processes' writes: not a usable measure.)
    held = 0
    for path in (server.home / "worker").rglob("*"):
        try:
            held += path.lstat().st_blocks * 512 if path.is_file() else 0
        except FileNotFoundError:  # a scratch dir removed meanwhile
            continue
    assert held < 2 * DEFAULT, held


def test_the_next_job_finds_its_storage_empty(
    small_default_server: RunningServer, test_image: str  # noqa: F811
) -> None:
    server = small_default_server
    marker = f"left-by-{uuid.uuid4().hex}"
    first, second = new_user(server), new_user(server)
    status, log = _run(server, first.token, f"echo {marker} > /io/{marker}; echo {marker} > /tmp/{marker}",
                       test_image)
    assert status["state"] == "Success", (status, log)
    for _ in range(3):  # whichever pooled volume each lands on
        status, log = _run(server, second.token, "ls -A /io /tmp; cat /io/* /tmp/* 2>/dev/null; true",
                           test_image)
        assert status["state"] == "Success", (status, log)
        assert marker not in log, log
