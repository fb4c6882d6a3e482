"""Jobs with images through a real server and a real worker running the oci runtime."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests.acceptance.conftest import start_server  # noqa: F401 - the whole-system fixture
from tests.acceptance.harness import RunningServer, job
from tests.containers.conftest import MARKER, Registry, push, sleepers

pytestmark = pytest.mark.slow


@pytest.fixture
def server(start_server: Any, registry: Registry) -> RunningServer:  # noqa: F811
    return start_server(runtime="oci", images=registry.images_setting())  # type: ignore[no-any-return]


def _log(server: RunningServer, batch_id: int, job_id: int, step: str = "main") -> str:
    with server.client() as c:
        r = c.get(f"/api/v1/batches/{batch_id}/jobs/{job_id}/log/{step}")
    return r.text if r.status_code == 200 else f"(HTTP {r.status_code})"


def _image_job(
    command: str, job_id: int, image: str, parents: list[int] | None = None, **extra: Any
) -> dict[str, Any]:
    spec = job(command, job_id, parents, **extra)
    spec["process"]["image"] = image
    return spec


def test_jobs_run_in_the_image_and_io_passes_to_the_child(
    server: RunningServer, test_image: str, request: pytest.FixtureRequest
) -> None:
    # file:// URLs must be under the user's roots: on the embedded default, the server's working dir.
    shared = Path(tempfile.mkdtemp(prefix=".corral-test-", dir=os.getcwd()))
    request.addfinalizer(lambda: shutil.rmtree(shared, ignore_errors=True))
    producer = _image_job(
        "cat /etc/image-marker > /io/result.txt; "
        "if test -e /etc/debian_version; then echo HOST-LEAK >> /io/result.txt; fi",
        1, test_image, output_files=[{"from": "/io/result.txt", "to": f"file://{shared}/result.txt"}],
    )
    consumer = _image_job(
        "echo from-parent: $(cat /io/in.txt)", 2, test_image, [1],
        input_files=[{"from": f"file://{shared}/result.txt", "to": "/io/in.txt"}],
    )
    on_host = job("test -e /etc/debian_version && echo host-sandbox", 3)  # no image: the process sandbox
    batch_id = server.submit([producer, consumer, on_host])
    status = server.wait(batch_id)
    logs = {j: _log(server, batch_id, j) for j in (1, 2, 3)}
    assert status["state"] == "success", (status, logs, server.log_tail())
    assert (shared / "result.txt").read_text() == MARKER + "\n"
    assert f"from-parent: {MARKER}" in logs[2]
    assert "host-sandbox" in logs[3]


def test_two_jobs_on_one_image_pull_it_once(
    server: RunningServer, image_layout: Path, registry: Registry
) -> None:
    repo = f"corral/shared-{uuid.uuid4().hex[:6]}"
    ref = push(image_layout, registry, repo)
    batch_id = server.submit([_image_job("cat /etc/image-marker", j, ref) for j in (1, 2)])
    status = server.wait(batch_id)
    assert status["state"] == "success", (status, server.log_tail())
    assert registry.blob_fetches(repo) == 2  # one layer and one config, each downloaded once
    worker_logs = "".join(p.read_text(errors="replace") for p in (server.home / "workers").glob("*.log"))
    assert worker_logs.count(f"pulled image {ref}") == 1, worker_logs[-2000:]


def test_memory_limit_fails_the_job_as_out_of_memory(server: RunningServer, test_image: str) -> None:
    hog = "dd if=/dev/zero of=/dev/null bs=300M count=1 && echo survived"
    batch_id = server.submit([_image_job(hog, 1, test_image, memory="64Mi")])
    server.wait(batch_id, timeout=60)
    detail = server.job(batch_id, 1)
    assert detail["state"] == "Failed", detail
    assert detail["status"]["out_of_memory"] is True


def test_io_beyond_the_storage_request_fails_the_job(server: RunningServer, test_image: str) -> None:
    big = _image_job("dd if=/dev/zero of=/io/big bs=1M count=48", 1, test_image)
    big["resources"]["storage"] = "16Mi"
    small = _image_job("dd if=/dev/zero of=/io/small bs=1M count=8", 2, test_image)
    small["resources"]["storage"] = "16Mi"
    batch_id = server.submit([big, small])
    server.wait(batch_id, timeout=60)
    jobs = server.jobs(batch_id)
    assert jobs[1]["state"] == "Failed", _log(server, batch_id, 1)
    assert "No space left" in _log(server, batch_id, 1)
    assert "No space left" in str(server.job(batch_id, 1)), server.job(batch_id, 1)  # the reason says so
    assert jobs[2]["state"] == "Success", _log(server, batch_id, 2)


def test_unknown_tag_ends_in_error_saying_image_not_found(server: RunningServer, test_image: str) -> None:
    missing = test_image.rsplit(":", 1)[0] + ":no-such-tag"
    batch_id = server.submit([_image_job("true", 1, missing)])
    server.wait(batch_id, timeout=60)
    detail = server.job(batch_id, 1)
    assert detail["state"] == "Error", detail
    assert f"image not found: {missing}" in str(detail["status"]), detail["status"]


def test_bad_image_reference_is_refused_at_submission(server: RunningServer) -> None:
    spec = _image_job("true", 1, "Not A Valid/Image")
    with server.client() as c:
        r = c.post(
            "/api/v1/batches/create-fast",
            json={
                "batch": {"billing_project": "default", "token": uuid.uuid4().hex, "n_jobs": 1},
                "bunch": [spec],
            },
        )
    assert r.status_code == 400 and r.json()["field"] == "bunch[0].process.image", r.text


def test_cancel_kills_the_container(server: RunningServer, test_image: str) -> None:
    seconds = str(1000 + uuid.uuid4().int % 9000)
    batch_id = server.submit([_image_job(f"sleep {seconds}", 1, test_image)])
    deadline = time.monotonic() + 60
    while not sleepers(seconds):
        assert time.monotonic() < deadline, f"the container never started\n{server.log_tail()}"
        time.sleep(0.1)
    with server.client() as c:
        assert c.patch(f"/api/v1/batches/{batch_id}/cancel").status_code in (200, 204)
    server.wait(batch_id, timeout=30)
    assert server.jobs(batch_id)[1]["state"] == "Cancelled"
    deadline = time.monotonic() + 15
    while sleepers(seconds) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not sleepers(seconds), "the cancelled container's process is still alive"


