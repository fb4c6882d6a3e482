"""The stock Hail client's default image, resolved through the [images] rewrite table, runs in a real
container: a site without Docker Hub access runs unchanged Hail pipelines in the image it chose."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tests.acceptance.conftest import start_server  # noqa: F401 - the whole-system fixture
from tests.acceptance.harness import RunningServer
from tests.acceptance.test_hail_client import hail_python, run_scenario  # noqa: F401 - fixture
from tests.containers.conftest import MARKER, Registry, push

pytestmark = pytest.mark.slow


def test_the_clients_default_image_is_rewritten_to_a_local_registry_and_run(
    start_server: Any,  # noqa: F811
    hail_python: str,  # noqa: F811
    registry: Registry,
    image_layout: Any,
    tmp_path: Path,
) -> None:
    local = push(image_layout, registry, "mirror/ubuntu", "24.04")
    images = json.loads(registry.images_setting())
    images["rewrite"] = {"docker.io/library/ubuntu:24.04": local}
    server: RunningServer = start_server(
        runtime="oci", cores=4, images=json.dumps(images), local_worker_memory="32Gi",
        hail_compat_dir=tmp_path / "home0" / "hail",  # where run_scenario looks: the first server's home
    )
    assert server.home == tmp_path / "home0"
    results = run_scenario(hail_python, server, "image.py")["image"]
    assert results["marker"] == MARKER + "\n"  # the image's file, and no host file leaked in
    assert results["spec_image"] == "ubuntu:24.04"  # the user's spec is kept as written
    assert not results["note"], results  # ran in its image: no "image ignored" note
