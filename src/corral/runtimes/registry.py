"""Runtimes by name: `corral.runtimes.<name>` defines a Runtime subclass; a new runtime is a new file."""

from __future__ import annotations

import contextlib
import importlib
import re

from corral.errors import InvalidInput
from corral.runtimes.base import Runtime

_RUNTIMES: dict[str, type[Runtime]] = {}
BUILTIN = ("process", "noop", "oci", "host")


def register(cls: type[Runtime]) -> type[Runtime]:
    _RUNTIMES[cls.name] = cls
    return cls


def runtime_class(name: str) -> type[Runtime]:
    if name not in _RUNTIMES:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise InvalidInput(f"{name!r} is not a runtime name", field="runtime")
        with contextlib.suppress(ModuleNotFoundError):
            importlib.import_module(f"corral.runtimes.{name}")
    cls = _RUNTIMES.get(name)
    if cls is None:
        raise InvalidInput(
            f"unknown runtime {name!r}; available: {', '.join(BUILTIN)}", field="runtime"
        )
    return cls
