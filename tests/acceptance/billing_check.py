"""What the tests of billing compute on their own: every attempt's charge from the attempts table and
the configured rates (decimals), and the ledger's rows as stored, read straight from the store."""

from __future__ import annotations

import asyncio
import math
from collections import defaultdict
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from sqlalchemy import select

from corral.store.db import make_engine
from corral.store.tables import attempts, batch_usage, daily_usage, jobs

MIB = 1024**2


@dataclass(frozen=True)
class SiteRates:
    cpu: str  # per core-hour
    memory: str = "0"  # per GiB-hour
    storage: str = "0"  # per GiB-hour

    def config(self, **extra: Any) -> dict[str, Any]:
        return {"site": {"cpu_core_hour": float(self.cpu), "memory_gib_hour": float(self.memory),
                         "storage_gib_hour": float(self.storage)}, **extra}


def store_url(server_home: Any, db_url: str | None) -> str:
    return db_url or f"sqlite+aiosqlite:///{server_home / 'corral.db'}"


def read_store(url: str, batch_id: int) -> dict[str, Any]:
    async def read() -> dict[str, Any]:
        engine = make_engine(url)
        try:
            async with engine.connect() as conn:
                tries = list(await conn.execute(
                    select(attempts, jobs.c.storage_bytes)
                    .join(jobs, (jobs.c.batch_id == attempts.c.batch_id)
                          & (jobs.c.job_id == attempts.c.job_id))
                    .where(attempts.c.batch_id == batch_id)
                ))
                by_batch = {r.resource: int(r.usage) for r in await conn.execute(
                    select(batch_usage).where(batch_usage.c.batch_id == batch_id))}
                by_day: dict[str, int] = defaultdict(int)
                for r in await conn.execute(select(daily_usage)):
                    by_day[r.resource] += int(r.usage)
        finally:
            await engine.dispose()
        return {"attempts": tries, "by_batch": by_batch, "by_day": dict(by_day)}

    return asyncio.run(read())


def charged_ms(attempt: Any) -> int:
    """An attempt is charged from its start (its assignment if it never started) to its end."""
    start = attempt.time_started if attempt.time_started is not None else attempt.time_assigned
    return round(attempt.time_ended * 1000) - round(start * 1000)


def expected_usage(tries: list[Any], version: int = 1) -> dict[str, int]:
    """resource -> quantity x ms over every ended attempt (cpu in milli-cores, memory/storage in MiB)."""
    usage: dict[str, int] = defaultdict(int)
    for a in tries:
        assert a.state == "ended", a
        ms = charged_ms(a)
        usage[f"cpu/site/{version}"] += a.cores_mcpu * ms
        usage[f"memory/site/{version}"] += math.ceil(a.memory_bytes / MIB) * ms
        if a.storage_bytes:
            usage[f"storage/site/{version}"] += math.ceil(a.storage_bytes / MIB) * ms
    return dict(usage)


SCALE = {"cpu": 1000, "memory": 1024, "storage": 1024}  # milli-cores per core, MiB per GiB


def expected_cost(usage: dict[str, int], rates: dict[str, str]) -> Decimal:
    """Sum over resources (by name) of usage x rate per unit-hour; `rates`: versioned resource -> rate."""
    total = Decimal(0)
    for name in sorted(usage):
        kind = name.split("/", 1)[0]
        total += Decimal(usage[name]) * Decimal(rates[name]) / (SCALE[kind] * 3_600_000)
    return total


def site_rates(rates: SiteRates, version: int = 1) -> dict[str, str]:
    return {f"cpu/site/{version}": rates.cpu, f"memory/site/{version}": rates.memory,
            f"storage/site/{version}": rates.storage}
