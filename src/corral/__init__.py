"""Corral: durable batches, fair scheduling, isolated jobs on any compute."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

if TYPE_CHECKING:
    from corral.client.backends import LocalBackend, ServiceBackend
    from corral.client.dsl import Batch, Job, ResourceFile
    from corral.sweeps.sweep import Sweep

_EXPORTS = {
    "Batch": "corral.client.dsl",
    "Job": "corral.client.dsl",
    "ResourceFile": "corral.client.dsl",
    "LocalBackend": "corral.client.backends",
    "ServiceBackend": "corral.client.backends",
    "Sweep": "corral.sweeps.sweep",
}


def __getattr__(name: str) -> Any:
    # Lazy, so `import corral.store` in the server does not import the client DSL.
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(name)


__all__ = ["Batch", "Job", "LocalBackend", "ResourceFile", "ServiceBackend", "Sweep", "__version__"]
