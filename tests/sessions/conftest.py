"""One real server with two local workers for every benchmark-session test of this folder."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.local_backend_support import isolated_local_backend

import corral


@pytest.fixture(scope="package")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[corral.LocalBackend]:
    # The shipped defaults: jobs on private networks, services' ports forwarded from the instance.
    with isolated_local_backend(Path(tmp_path_factory.mktemp("bench-home"))) as local:
        yield local
