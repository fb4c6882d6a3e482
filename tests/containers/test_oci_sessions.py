"""A benchmark session whose service runs in an OCI image (busybox httpd in the test image) on a worker
with the oci runtime; the client (no image) loads it from the process sandbox."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from tests.acceptance.conftest import start_server  # noqa: F401 - the whole-system fixture
from tests.acceptance.harness import RunningServer
from tests.containers.conftest import Registry, require_container_tools
from tests.services.conftest import HOST_NETWORK

from corral.client.backends import ServiceBackend
from corral.sessions import runner
from corral.sessions.recipe import parse_recipe

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("host_network", [False, True], ids=["private-network", "host-network"])
def test_session_with_the_service_in_an_image(
    start_server: Any,  # noqa: F811
    registry: Registry,
    test_image: str,
    tmp_path: Path,
    host_network: bool,
) -> None:
    """By default the container is in a private network and its port is forwarded from the instance."""
    require_container_tools()
    site = {"jobs": HOST_NETWORK} if host_network else {}
    server: RunningServer = start_server(runtime="oci", images=registry.images_setting(), **site)
    recipe = parse_recipe(
        {
            "name": "oci-httpd",
            "service": {
                "type": "command",
                "image": test_image,
                "ready": {"deadline": 120},
                "grace_period": 2,
                "resources": {"cpu": 0.5, "memory": "256Mi"},
                "command": "mkdir -p /tmp/www && echo hello > /tmp/www/index.html && "
                "exec busybox httpd -f -p $CORRAL_PORT_MAIN -h /tmp/www",
            },
            "clients": [
                {
                    "type": "http",
                    "params": {"path": "/index.html"},
                    "load": {"concurrency": 2},
                    "resources": {"cpu": 0.5, "memory": "256Mi"},
                    "stop": {"min_duration": 0.5, "min_requests": 50},
                }
            ],
        }
    )
    backend = ServiceBackend(server.url, server.token)
    session = runner.submit(recipe, backend)
    client = backend.client()
    try:
        runner.wait(client, session, timeout=120)
    except TimeoutError:
        jobs = [(j.job_id, j.state) for j in client.iter_jobs(session["batch_id"])]
        raise AssertionError(
            (jobs, client.get_job(session["batch_id"], 1).model_dump(), server.log_tail(40))
        ) from None
    outcome = runner.finalize(client, session["id"], tmp_path / "report")
    jobs = [j.model_dump() for j in client.iter_jobs(session["batch_id"])]
    assert outcome.state == "success", (outcome, jobs, client.job_logs(session["batch_id"], 1))
    rows = {r["metric"]: r["value"] for r in runner.get_results(client, session["id"])}
    assert rows["n"] >= 50 and rows["failures"] == 0 and rows["throughput"] > 0
    service = client.get_job(session["batch_id"], 1).status or {}
    assert service["service"]["network"] == ("host" if host_network else "nat"), service
    manifest = (tmp_path / "report" / "manifest.json").read_text()
    assert test_image in manifest
