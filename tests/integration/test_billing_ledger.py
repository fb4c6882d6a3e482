"""The driver's accounting against a real store (SQLite and PostgreSQL): charges accrue while an attempt
runs, are exact after a crash at any point (a rolled-back tick, a restart), and keep the rate in force
when each attempt started. Costs are computed here independently from rates x usage and compared exactly."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from test_api_support import Api, api_fixture, job  # noqa: F401

from corral.config import Settings
from corral.domain.billing.config import BillingConfig
from corral.driver.accounting import Accounting
from corral.driver.instances import AttemptInFlight
from corral.store import instances as instance_store
from corral.store import ledger
from corral.store.tables import attempt_charges, attempts, batch_usage, batches, daily_usage, jobs

MIB = 1024**2
T0 = 1_760_000_000.25  # an attempt's start (epoch seconds)


def settings(cpu: str, memory: str) -> Settings:
    config = BillingConfig.model_validate(
        {"accrual_interval": 1.0, "site": {"cpu_core_hour": float(cpu), "memory_gib_hour": float(memory)}}
    )
    return Settings(billing=config)


def expected_cost(seconds: str, cores: str, gib: str, cpu_rate: str, memory_rate: str) -> float:
    """Rates (per hour) x usage, computed here with decimals."""
    hours = Decimal(seconds) / 3600
    return float(Decimal(cores) * hours * Decimal(cpu_rate) + Decimal(gib) * hours * Decimal(memory_rate))


async def _setup(api: Api, n_jobs: int = 2) -> int:
    batch_id = await api.submit([job(i) for i in range(1, n_jobs + 1)])
    async with api.engine.begin() as conn:
        await instance_store.ensure_collection(conn, "default", kind="pool", provider="local", config={})
        await instance_store.create_instance(
            conn, name="w1", collection="default", cores_mcpu=4000, memory_bytes=8 * 1024 * MIB,
            token_hash="0" * 64, metadata={}, now=T0,
        )
    return batch_id


async def _attempt(api: Api, batch_id: int, job_id: int, start: float) -> AttemptInFlight:
    """What the driver's scheduler does: an attempt row and its in-flight record (0.5 core, 256 MiB)."""
    async with api.engine.begin() as conn:
        await conn.execute(attempts.insert().values(
            batch_id=batch_id, job_id=job_id, attempt_id=1, instance_name="w1", cores_mcpu=500,
            memory_bytes=256 * MIB, state="running", time_assigned=start, time_started=start,
        ))
    return AttemptInFlight(batch_id, job_id, 1, "alice", "default", 500, 256 * MIB, {"storage_bytes": 0},
                           start, "w1", time_started=start)


async def _tick(acc: Accounting, api: Api, now: float) -> None:
    acc.last_accrual = 0.0  # every tick here is an accrual tick
    async with api.engine.begin() as conn:
        await acc.settle(conn, now)


async def _costs(api: Api, batch_id: int) -> dict[str, Any]:
    async with api.engine.connect() as conn:
        job_costs = {r.job_id: r.cost for r in await conn.execute(
            select(jobs.c.job_id, jobs.c.cost).where(jobs.c.batch_id == batch_id))}
        batch_cost = (await conn.execute(select(batches.c.cost).where(batches.c.id == batch_id))).scalar_one()
        by_batch = {r.resource: int(r.usage) for r in await conn.execute(
            select(batch_usage).where(batch_usage.c.batch_id == batch_id))}
        by_day: dict[str, int] = {}
        for r in await conn.execute(select(daily_usage)):
            by_day[r.resource] = by_day.get(r.resource, 0) + int(r.usage)
        spend = (await ledger.project_spend(conn)).get("default", Decimal(0))
    return {"jobs": job_costs, "batch": batch_cost, "by_batch": by_batch, "by_day": by_day, "spend": spend}


async def test_accrual_survives_a_rolled_back_tick_and_a_restart_exactly(api: Api) -> None:
    batch_id = await _setup(api)
    s = settings("3.6", "0.36")
    acc = Accounting(s)
    await acc.rebuild(api.engine, [])
    flight = await _attempt(api, batch_id, 1, T0)
    acc.attempt_assigned(flight)
    await _tick(acc, api, T0 + 10)
    assert (await _costs(api, batch_id))["jobs"][1] == expected_cost("10", "0.5", "0.25", "3.6", "0.36")

    # The driver dies inside its next tick: that transaction never commits.
    with pytest.raises(RuntimeError):
        async with api.engine.begin() as conn:
            acc.last_accrual = 0.0
            await acc.settle(conn, T0 + 30)
            raise RuntimeError("driver killed")
    # A new driver rebuilds from the store and goes on from what was committed.
    acc = Accounting(s)
    await acc.rebuild(api.engine, [flight])
    await _tick(acc, api, T0 + 40)
    got = await _costs(api, batch_id)
    assert got["jobs"][1] == expected_cost("40", "0.5", "0.25", "3.6", "0.36")

    # A replay of a move already made changes nothing.
    async with api.engine.begin() as conn:
        from_ms = round(T0 * 1000) + 10_000
        stale = ledger.ChargeMove((batch_id, 1, 1), from_ms, from_ms + 30_000, False)
        with pytest.raises(ledger.LedgerConflict):
            await ledger.move_charges(conn, [stale])

    # It ends at T0 + 45.5: the last slice is charged once and the charge is closed.
    acc.attempts_ended([(batch_id, 1, 1, T0 + 45.5)])
    await _tick(acc, api, T0 + 46)
    await _tick(acc, api, T0 + 80)
    got = await _costs(api, batch_id)
    expected = expected_cost("45.5", "0.5", "0.25", "3.6", "0.36")
    assert got["jobs"][1] == expected and got["batch"] == expected and float(got["spend"]) == expected
    assert got["by_batch"] == got["by_day"] == {"cpu/site/1": 500 * 45_500, "memory/site/1": 256 * 45_500}
    async with api.engine.connect() as conn:
        ended = (await conn.execute(select(attempt_charges.c.ended))).scalars().all()
    assert ended == [True]


async def test_a_rate_change_charges_each_attempt_the_rate_in_force_when_it_started(api: Api) -> None:
    batch_id = await _setup(api)
    first = Accounting(settings("3.6", "0.36"))
    await first.rebuild(api.engine, [])
    one = await _attempt(api, batch_id, 1, T0)
    first.attempt_assigned(one)
    await _tick(first, api, T0 + 20)
    # The server restarts with new rates while job 1 still runs; job 2 starts afterwards.
    second = Accounting(settings("7.2", "0.36"))
    await second.rebuild(api.engine, [one])
    two = await _attempt(api, batch_id, 2, T0 + 30)
    second.attempt_assigned(two)
    await _tick(second, api, T0 + 40)
    second.attempts_ended([(batch_id, 1, 1, T0 + 60), (batch_id, 2, 1, T0 + 60)])
    await _tick(second, api, T0 + 61)
    got = await _costs(api, batch_id)
    assert got["jobs"][1] == expected_cost("60", "0.5", "0.25", "3.6", "0.36")  # its own, older rate
    assert got["jobs"][2] == expected_cost("30", "0.5", "0.25", "7.2", "0.36")
    assert got["by_batch"] == {"cpu/site/1": 500 * 60_000, "cpu/site/2": 500 * 30_000,
                               "memory/site/1": 256 * 90_000}
    async with api.engine.connect() as conn:
        versions = [(v.name, v.rate) for v in await ledger.load_rates(conn)]
    assert versions == [("cpu/site/1", 3.6), ("cpu/site/2", 7.2), ("memory/site/1", 0.36)]
    r = await api.client.get(f"/api/v1/batches/{batch_id}/jobs/2")
    assert [line["resource"] for line in r.json()["cost_breakdown"]] == ["cpu/site/2", "memory/site/1"]


async def test_each_provider_kind_is_priced_from_what_the_store_knows_of_its_instance(api: Api) -> None:
    """Instance metadata and collection config, as providers and the autoscaler store them, choose the
    rates: an ssh host, a SLURM partition, a rented host's own price, a job-private instance."""
    batch_id = await api.submit([job(i) for i in range(1, 5)])
    gib = 1024 * MIB
    instances = {  # name: (collection, kind, provider, config, metadata, reserved_for, gpus)
        "s1": ("lab", "pool", "ssh", {}, {"host": "gpu1"}, None, 0),
        "h1": ("hpc", "pool", "slurm", {"provider_options": {"partition": "debug"}}, {}, None, 0),
        "v1": ("vast", "pool", "vastai", {}, {"price_per_hour": 2.0}, None, 4),
        "p1": ("private", "job_private", "ssh", {}, {"cost_per_core_hour": 0.5}, f"{batch_id}.4", 0),
    }
    async with api.engine.begin() as conn:
        for name, (col, kind, provider, config, meta, reserved, gpus) in instances.items():
            await instance_store.ensure_collection(conn, col, kind=kind, provider=provider, config=config)
            await instance_store.create_instance(
                conn, name=name, collection=col, cores_mcpu=4000, memory_bytes=8 * gib, token_hash=name * 16,
                metadata=meta, now=T0, gpus=gpus, gpu_type="A100" if gpus else None, reserved_for=reserved,
            )
    config = BillingConfig.model_validate({
        "site": {"cpu_core_hour": 0.04},
        "collections": {"lab": {"hosts": {"gpu1": {"cpu_core_hour": 0.1}}},
                        "hpc": {"billing_unit_hour": 0.01, "partitions": {"debug": {"cpu": 2.0}}},
                        "vast": {"pricing": "instance"}},
    })
    acc = Accounting(Settings(billing=config))
    await acc.rebuild(api.engine, [])
    for job_id, name in enumerate(instances, start=1):
        async with api.engine.begin() as conn:
            await conn.execute(attempts.insert().values(
                batch_id=batch_id, job_id=job_id, attempt_id=1, instance_name=name, cores_mcpu=1000,
                memory_bytes=gib, state="running", time_assigned=T0, time_started=T0,
            ))
        acc.attempt_assigned(AttemptInFlight(batch_id, job_id, 1, "alice", "p", 1000, gib, {}, T0, name,
                                             time_started=T0, gpus=1 if name == "v1" else 0))
    await _tick(acc, api, T0 + 3600)
    async with api.engine.connect() as conn:
        found = await conn.execute(select(attempt_charges))
        rows = {r.job_id: [tuple(x) for x in r.resources] for r in found}
    assert rows == {
        1: [("cpu/lab/gpu1/1", 1000), ("memory/lab/gpu1/1", 1024)],
        2: [("cpu/hpc/debug/1", 1000), ("memory/hpc/debug/1", 1024)],
        3: [("instance/vast/v1/1", 250_000)],  # 1 of its 4 GPUs
        4: [("instance/private/p1/1", 1_000_000)],  # the whole job-private instance
    }
    got = await _costs(api, batch_id)  # one hour of each
    assert got["jobs"] == {1: 0.1, 2: 0.02, 3: 0.5, 4: 2.0}  # 0.5 per core-hour x 4 cores


async def test_batch_costs_stay_exact_with_the_roll_up_kept_in_memory(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """batches.cost comes from the roll-up the accounting keeps (no read per tick): it equals the cost of
    the batch's usage in the store after every tick, when a batch falls out of memory and is read again,
    and after a rolled-back tick (the same accounting rebuilds, as the driver's recovery does)."""
    monkeypatch.setattr("corral.driver.accounting.BATCH_USAGE_KEPT", 1)  # two batches: one is dropped
    first, second = await _setup(api), await api.submit([job(1), job(2)])
    acc = Accounting(settings("3.6", "0.36"))
    await acc.rebuild(api.engine, [])
    flights = [await _attempt(api, b, j, T0) for b in (first, second) for j in (1, 2)]
    for flight in flights:
        acc.attempt_assigned(flight)

    async def batch_costs_match_the_store() -> None:
        async with api.engine.connect() as conn:
            stored = {r.id: r.cost for r in await conn.execute(
                select(batches.c.id, batches.c.cost).where(batches.c.id.in_([first, second])))}
            usage = await ledger.batch_breakdowns(conn, [first, second])
        assert stored == {b: float(sum(line.cost for line in usage.get(b, []))) for b in (first, second)}
        assert stored[first] > 0 and stored[second] > 0

    await _tick(acc, api, T0 + 10)
    await batch_costs_match_the_store()
    await _tick(acc, api, T0 + 20)
    await batch_costs_match_the_store()
    with pytest.raises(RuntimeError):  # a tick that never commits: its usage must not stay in memory
        async with api.engine.begin() as conn:
            acc.last_accrual = 0.0
            await acc.settle(conn, T0 + 25)
            raise RuntimeError("tick failed")
    await acc.rebuild(api.engine, flights)
    acc.attempts_ended([(b, j, 1, T0 + 30) for b in (first, second) for j in (1, 2)])
    await _tick(acc, api, T0 + 31)
    await batch_costs_match_the_store()
    got = await _costs(api, first)
    assert got["batch"] == 2 * expected_cost("30", "0.5", "0.25", "3.6", "0.36")
    assert (await _costs(api, second))["batch"] == got["batch"]


async def test_attempts_alike_are_priced_once_and_anew_when_their_instance_learns_a_price(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Short jobs on one instance share one pricing (the accounting keeps it by instance facts and demand);
    a price the provider writes into the instance's metadata later makes new facts: priced again, a new
    rate version, and the attempts charged before keep theirs."""
    from sqlalchemy import update

    from corral.driver import accounting
    from corral.store.tables import instances

    calls: list[str] = []
    real = accounting.price_attempt

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args[1].name)
        return real(*args, **kwargs)

    monkeypatch.setattr(accounting, "price_attempt", counted)
    batch_id = await api.submit([job(i) for i in range(1, 4)])
    gib = 1024 * MIB
    async with api.engine.begin() as conn:
        await instance_store.ensure_collection(conn, "vast", kind="pool", provider="vastai", config={})
        await instance_store.create_instance(
            conn, name="v1", collection="vast", cores_mcpu=4000, memory_bytes=8 * gib, token_hash="v" * 64,
            metadata={"price_per_hour": 2.0}, now=T0,
        )
    config = BillingConfig.model_validate({"collections": {"vast": {"pricing": "instance"}}})
    acc = Accounting(Settings(billing=config))
    await acc.rebuild(api.engine, [])

    async def run(job_id: int, start: float) -> None:
        async with api.engine.begin() as conn:
            await conn.execute(attempts.insert().values(
                batch_id=batch_id, job_id=job_id, attempt_id=1, instance_name="v1", cores_mcpu=1000,
                memory_bytes=gib, state="running", time_assigned=start, time_started=start,
            ))
        acc.attempt_assigned(AttemptInFlight(batch_id, job_id, 1, "alice", "p", 1000, gib, {}, start, "v1",
                                             time_started=start))

    await run(1, T0)
    await run(2, T0)
    await _tick(acc, api, T0 + 3600)
    assert calls == ["v1"]  # two attempts alike: priced once
    async with api.engine.begin() as conn:
        await conn.execute(update(instances).where(instances.c.name == "v1")
                           .values(metadata={"price_per_hour": 4.0}))
    await run(3, T0 + 3600)
    await _tick(acc, api, T0 + 7200)
    assert calls == ["v1", "v1"]
    async with api.engine.connect() as conn:
        found = await conn.execute(select(attempt_charges))
        rows = {r.job_id: [tuple(x) for x in r.resources] for r in found}
    assert rows == {1: [("instance/vast/v1/1", 250_000)], 2: [("instance/vast/v1/1", 250_000)],
                    3: [("instance/vast/v1/2", 250_000)]}
    got = await _costs(api, batch_id)  # a quarter of the instance: 2 hours at 2.0, then 1 hour at 4.0
    assert got["jobs"] == {1: 1.0, 2: 1.0, 3: 1.0}
