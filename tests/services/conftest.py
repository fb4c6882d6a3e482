"""Service jobs end to end: one real server with two local workers, shared by the tests of a module."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.local_backend_support import HOST_NETWORK, isolated_local_backend

import corral

__all__ = ["HOST_NETWORK", "backend", "need"]


def need(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        if os.environ.get("CI") == "true":
            raise RuntimeError(f"{', '.join(missing)} missing: scripts/setup.sh --test installs them")
        pytest.skip(f"{', '.join(missing)} not installed (scripts/setup.sh --test)")


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[corral.LocalBackend]:
    # services serve on the instance's network: the site's opt-in
    with isolated_local_backend(Path(tmp_path_factory.mktemp("svc-home")), jobs=HOST_NETWORK) as local:
        yield local
