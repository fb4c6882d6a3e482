"""The worker agent: activation, assignment loop, job steps (input, main, output), logs, usage.

The agent is imported lazily: the driver imports `corral.worker.protocol` (the wire format both sides
share) without pulling in the runtimes.
"""

from __future__ import annotations

from typing import Any

__all__ = ["Agent", "WorkerExit", "run_worker"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from corral.worker import agent

        return getattr(agent, name)
    raise AttributeError(f"module 'corral.worker' has no attribute {name!r}")
