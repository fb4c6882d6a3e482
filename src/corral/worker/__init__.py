"""The worker agent: activation, assignment loop, job steps (input, main, output), logs, usage."""

from __future__ import annotations

from corral.worker.agent import Agent, WorkerExit, run_worker

__all__ = ["Agent", "WorkerExit", "run_worker"]
