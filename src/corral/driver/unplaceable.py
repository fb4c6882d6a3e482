"""Ready jobs that fit no instance their pool can bring up, kept out of the ready queues.

In a queue such a job would sit at the head of its user's FIFO and block every later job of that user
in that pool. Here it waits, with the reason in words (saved on the job for the API), until the pool
grows (an instance registers or activates), when it is checked again.
"""

from __future__ import annotations

from corral.domain.scheduling import ReadyJob
from corral.store.job_moves import JobKey


class UnplaceableJobs:
    def __init__(self) -> None:
        self._by_pool: dict[str, dict[JobKey, tuple[ReadyJob, str]]] = {}
        self._reasons: dict[JobKey, str | None] = {}  # to save in the next tick

    def __len__(self) -> int:
        return sum(len(jobs) for jobs in self._by_pool.values())

    def __contains__(self, key: JobKey) -> bool:
        return any(key in jobs for jobs in self._by_pool.values())

    def park(self, pool: str, job: ReadyJob, reason: str) -> None:
        self._by_pool.setdefault(pool, {})[job.key] = (job, reason)
        self._reasons[job.key] = reason

    def release(self, pool: str) -> list[ReadyJob]:
        """Every job of the pool, to be checked again; those that fit now lose their reason."""
        released = self._by_pool.pop(pool, {})
        for key in released:
            self._reasons[key] = None
        return [job for job, _ in released.values()]

    def drop_batch(self, batch_id: int) -> None:
        for jobs in self._by_pool.values():
            for key in [k for k in jobs if k[0] == batch_id]:
                del jobs[key]

    def reason(self, key: JobKey) -> str | None:
        for jobs in self._by_pool.values():
            if key in jobs:
                return jobs[key][1]
        return None

    def take_reasons(self) -> dict[JobKey, str | None]:
        reasons, self._reasons = self._reasons, {}
        return reasons

    def clear(self) -> None:
        self._by_pool.clear()
        self._reasons.clear()
