"""Cost breakdowns on batch and job statuses, in Hail's shape: [{"resource": "cpu/site/1", "cost": 0.12}].

Each line is one versioned resource (the rate it was charged at), so a rate change shows as a new line."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from corral.domain.billing.ledger import CostLine
from corral.store import ledger


def wire(lines: Sequence[CostLine]) -> list[dict[str, Any]]:
    return [{"resource": line.resource, "cost": float(line.cost), "usage": line.usage} for line in lines]


async def batch_breakdowns(
    conn: AsyncConnection, batch_ids: Sequence[int]
) -> dict[int, list[dict[str, Any]]]:
    found = await ledger.batch_breakdowns(conn, batch_ids)
    return {b: wire(found.get(b, [])) for b in batch_ids}


async def job_breakdown(conn: AsyncConnection, batch_id: int, job_id: int) -> list[dict[str, Any]]:
    return wire(await ledger.job_breakdown(conn, batch_id, job_id))
