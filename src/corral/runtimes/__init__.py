"""How a job's main command runs on an instance; runtimes are looked up by name."""

from __future__ import annotations

from corral.runtimes.base import MainRequest, MainResult, Runtime, RuntimeUnavailable
from corral.runtimes.registry import runtime_class

__all__ = ["MainRequest", "MainResult", "Runtime", "RuntimeUnavailable", "runtime_class"]
