"""Service jobs end to end: one real server with two local workers, shared by the tests of a module."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

import corral

HOST_NETWORK = '{"host_network": true}'


def need(*programs: str) -> None:
    missing = [p for p in programs if shutil.which(p) is None]
    if missing:
        if os.environ.get("CI") == "true":
            raise RuntimeError(f"{', '.join(missing)} missing: scripts/setup.sh --test installs them")
        pytest.skip(f"{', '.join(missing)} not installed (scripts/setup.sh --test)")


@pytest.fixture(scope="module")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[corral.LocalBackend]:
    saved = {k: os.environ.pop(k) for k in [k for k in os.environ if k.startswith("CORRAL_")]}
    os.environ["CORRAL_JOBS"] = HOST_NETWORK  # services serve on the instance's network: the site's opt-in
    home = tmp_path_factory.mktemp("svc-home")
    try:
        with corral.LocalBackend(home=Path(home), workers=2, cores=2) as local:
            yield local
    finally:
        os.environ.pop("CORRAL_JOBS", None)
        os.environ.update(saved)
