"""One real server with two local workers for every benchmark-session test of this folder."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

import corral


@pytest.fixture(scope="package")
def backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[corral.LocalBackend]:
    saved = {k: os.environ.pop(k) for k in [k for k in os.environ if k.startswith("CORRAL_")]}
    # The shipped defaults: jobs on private networks, services' ports forwarded from the instance.
    home = tmp_path_factory.mktemp("bench-home")
    try:
        with corral.LocalBackend(home=Path(home), workers=2, cores=2) as local:
            yield local
    finally:
        os.environ.update(saved)
