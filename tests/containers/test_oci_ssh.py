"""Jobs with images on a worker the server started over SSH (real sshd): the worker gets the site's
[images] settings from the server (registries, user namespace), pulls from the registry and runs the job
in its image, as its unprivileged uid."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.acceptance.conftest import start_server  # noqa: F401 - the whole-system fixture
from tests.acceptance.harness import RunningServer, job
from tests.acceptance.sshbed import SshTestbed, collections_toml, start_testbed, stop_testbed
from tests.containers.conftest import MARKER, Registry

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def ssh_hosts(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshTestbed]:
    testbed = start_testbed(tmp_path_factory.mktemp("sshd"), tmp_path_factory.mktemp("ssh-work"), n_hosts=1)
    yield testbed
    stop_testbed(testbed)


def test_an_image_job_runs_in_its_image_on_an_ssh_worker(
    start_server: Any, tmp_path: Path, ssh_hosts: SshTestbed, registry: Registry, test_image: str,  # noqa: F811
) -> None:
    host = ssh_hosts.loopback_host("oci-host", cores=2, memory="2Gi")
    pool = {
        "name": "lab", "kind": "pool", "provider": "ssh", "shape": {"cores": 1, "memory": "512Mi"},
        "min_instances": 0, "max_instances": 1, "idle_seconds": 30.0,
        "provider_options": {"hosts": [host], "worker_runtime": "oci", "connect_timeout": 10.0},
    }
    config = tmp_path / "corral.toml"
    config.write_text(collections_toml([pool]))
    # The server's own [images] setting: the SSH worker can only pull from this plain-HTTP registry with it.
    server: RunningServer = start_server(
        local_workers=0, config=str(config), pool="lab", heartbeat_timeout=10,
        images=registry.images_setting(),
    )
    spec = job("cat /etc/image-marker; id -u; test -e /etc/debian_version && echo HOST-LEAK; true", 1)
    spec["process"]["image"] = test_image
    batch_id = server.submit([spec])
    status = server.wait(batch_id, timeout=300)
    with server.client() as c:
        log = c.get(f"/api/v1/batches/{batch_id}/jobs/1/log/main").text
        attempts = c.get(f"/api/v1/batches/{batch_id}/jobs/1/attempts").json()
        instances = c.get("/api/v1/instances").json()
    assert status["state"] == "success", (status, log, server.log_tail(60))
    lines = log.split()
    assert MARKER in lines and "HOST-LEAK" not in log  # the image's root, not the host's
    assert "0" in lines  # root inside the image's user namespace ...
    lab = {i["name"] for i in instances if i["pool"] == "lab"}
    assert attempts and attempts[-1]["instance_name"] in lab, (attempts, instances)  # ... on the SSH worker
    pulls = registry.blob_fetches("corral/test")
    assert pulls >= 1  # the SSH worker pulled the image itself, through the settings the server sent
