"""Sending compiled job specs: one call for small batches, bunches (≤ 4 in flight) + commit otherwise.

Every path is idempotent on its token, so retrying after a network error never duplicates work.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

from corral.api.schemas import BatchSpec, JobSpec
from corral.client.compile import MAX_BUNCH_BYTES, MAX_BUNCH_JOBS, split_bunches
from corral.client.http import AsyncClient

PARALLEL_BUNCHES = 4


@dataclass(frozen=True)
class Submitted:
    batch_id: int
    start_job_id: int  # absolute id of the update's job 1


async def _upload(
    client: AsyncClient, batch_id: int, update_id: int, bunches: Sequence[Sequence[JobSpec]], parallel: int
) -> None:
    gate = asyncio.Semaphore(parallel)

    async def one(bunch: Sequence[JobSpec]) -> None:
        async with gate:
            await client.create_jobs(batch_id, update_id, bunch)

    await asyncio.gather(*(one(b) for b in bunches))


async def submit_new_batch(
    client: AsyncClient,
    spec: BatchSpec,
    jobs: Sequence[JobSpec],
    *,
    max_jobs: int = MAX_BUNCH_JOBS,
    max_bytes: int = MAX_BUNCH_BYTES,
    parallel: int = PARALLEL_BUNCHES,
) -> Submitted:
    bunches = split_bunches(jobs, max_jobs=max_jobs, max_bytes=max_bytes)
    spec = spec.model_copy(update={"n_jobs": len(jobs)})
    if len(bunches) <= 1:
        created = await client.create_fast(spec, jobs)
        return Submitted(created.id, created.start_job_id or 1)
    created = await client.create_batch(spec)
    if created.update_id is None:
        raise AssertionError(
            f"the server created batch {created.id} without an update for its {len(jobs)} jobs"
        )
    await _upload(client, created.id, created.update_id, bunches, parallel)
    committed = await client.commit_update(created.id, created.update_id)
    return Submitted(created.id, int(committed.get("start_job_id") or created.start_job_id or 1))


async def submit_update(
    client: AsyncClient,
    batch_id: int,
    token: str,
    jobs: Sequence[JobSpec],
    *,
    max_jobs: int = MAX_BUNCH_JOBS,
    max_bytes: int = MAX_BUNCH_BYTES,
    parallel: int = PARALLEL_BUNCHES,
) -> Submitted:
    """Append jobs to an existing batch as one update identified by `token`."""
    bunches = split_bunches(jobs, max_jobs=max_jobs, max_bytes=max_bytes)
    if len(bunches) <= 1:
        update = await client.update_fast(batch_id, token, jobs)
        return Submitted(batch_id, update.start_job_id)
    update = await client.create_update(batch_id, token, len(jobs))
    await _upload(client, batch_id, update.update_id, bunches, parallel)
    committed = await client.commit_update(batch_id, update.update_id)
    return Submitted(batch_id, int(committed.get("start_job_id") or update.start_job_id))
