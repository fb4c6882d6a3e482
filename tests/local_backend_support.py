"""A real embedded server (LocalBackend) for a folder's tests, free of the caller's CORRAL_* settings."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import corral

HOST_NETWORK = '{"host_network": true}'  # CORRAL_JOBS: services serve on the instance's network


@contextmanager
def isolated_local_backend(home: Path, *, jobs: str | None = None) -> Iterator[corral.LocalBackend]:
    """Two 2-core local workers in `home`; none of the caller's CORRAL_* variables apply (CORRAL_JOBS is
    `jobs` when given); the environment is restored afterwards."""
    saved = {k: os.environ.pop(k) for k in [k for k in os.environ if k.startswith("CORRAL_")]}
    if jobs is not None:
        os.environ["CORRAL_JOBS"] = jobs
    try:
        with corral.LocalBackend(home=home, workers=2, cores=2) as local:
            yield local
    finally:
        os.environ.pop("CORRAL_JOBS", None)
        os.environ.update(saved)
