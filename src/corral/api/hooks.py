"""What the API tells the driver. The driver implements it; tests use a small recorder."""

from __future__ import annotations

from typing import Protocol


class DriverHooks(Protocol):
    async def batch_committed(self, batch_id: int) -> None:
        """An update was committed: new Ready jobs may exist."""

    async def batch_cancelled(self, batch_id: int) -> None:
        """The batch was cancelled: the driver cancels its jobs."""

    async def job_groups_cancelled(self, batch_id: int, job_group_ids: set[int]) -> None:
        """These job groups of the batch were cancelled: the driver cancels their unfinished jobs."""
