"""What the API tells the driver. The driver implements it; tests use a small recorder."""

from __future__ import annotations

import asyncio
from typing import Any, Protocol


class DriverHooks(Protocol):
    async def batch_committed(self, batch_id: int) -> None:
        """An update was committed: new Ready jobs may exist."""

    async def batch_cancelled(self, batch_id: int) -> None:
        """The batch was cancelled: the driver cancels its jobs."""

    def completion_of(self, batch_id: int) -> asyncio.Future[None]:
        """A future set when the batch completes from now on (the caller cancels it when done waiting)."""

    async def job_groups_cancelled(self, batch_id: int, job_group_ids: set[int]) -> None:
        """These job groups of the batch were cancelled: the driver cancels their unfinished jobs."""

    async def register_instance(
        self, *, name: str, pool: str, token: str, cores_mcpu: int, memory_bytes: int,
        metadata: dict[str, Any], gpus: int = 0, gpu_type: str | None = None,
    ) -> None:
        """An instance whose worker an admin starts by hand (`corral worker --token`)."""
