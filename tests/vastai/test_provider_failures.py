"""Each failure of VastAPI.md's list, injected in the fake: the provider recovers on another machine and
the fake's ledger shows nothing of ours left running."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.fakes.vastai.process import FakeVastProcess
from tests.vastai.conftest import Blocks
from tests.vastai.test_provider_bringup import live_of, request

from corral.providers.vastai.provider import BringUpFailed

QUICK = {"running_deadline": 5.0, "ssh_deadline": 5.0}

# fault on the cheapest machine -> what the provider must say about it (None: not bad-listed, just skipped)
BRING_UP_FAULTS = {
    "offer_gone": None,
    "double_rent": "not running after",
    "stuck_loading": "not running after",
    "oci_error": "OCI runtime create failed",
    "ssh_refused": "SSH to",
    "ssh_hang": "SSH to",
    "ssh_close": "SSH to",
    "wrong_gpu_count": "nvidia-smi shows 0",
    "nvml_failure": "couldn't communicate with the NVIDIA driver",
    "cuda_broken": "CUDA available",
    "bid_too_low": "rent refused",
}


@pytest.mark.parametrize("fault", sorted(BRING_UP_FAULTS))
async def test_a_faulty_host_is_destroyed_and_bad_listed_and_another_offer_is_used(
    fault: str, fake_vast: FakeVastProcess, make_provider: Any
) -> None:
    machines = Blocks.take()
    fake_vast.faults(machines={str(machines[0]): [fault]})
    provider = await make_provider(
        machines, interruptible=fault == "bid_too_low", prepare={"import_torch": True, "cuda": True}, **QUICK
    )
    meta = await provider.create_instance(request(f"gpu-{fault}"))
    assert meta["machine_id"] != machines[0]
    bad = provider.bad.active(__import__("time").time())
    if BRING_UP_FAULTS[fault] is None:
        assert machines[0] not in bad
    else:
        assert BRING_UP_FAULTS[fault] in bad[machines[0]], bad
    rows = [r for r in fake_vast.ledger()["instances"] if r["machine_id"] == machines[0]]
    if fault == "offer_gone":
        assert rows == []  # the rent was refused: nothing was created there
    else:
        assert rows and all(r["destroyed_at"] is not None for r in rows), rows
    if fault == "cuda_broken":
        assert meta["prepare"]["ok"] is True  # on the good host the checks passed
        assert [s["name"] for s in meta["prepare"]["steps"]] == ["import torch", "CUDA available"]
    await provider.delete_instance(f"gpu-{fault}", meta)
    assert live_of(fake_vast, provider) == []


async def test_when_every_offer_fails_the_creation_fails_with_each_reason_and_leaves_nothing(
    fake_vast: FakeVastProcess, make_provider: Any
) -> None:
    machines = Blocks.take(3)
    fake_vast.faults(machines={str(m): ["cuda_broken"] for m in machines})
    provider = await make_provider(machines, prepare={"cuda": True}, **QUICK)
    with pytest.raises(BringUpFailed) as failed:
        await provider.create_instance(request("gpu-doomed"))
    assert failed.value.metadata["prepare"]["ok"] is False  # the report stays visible on the instance
    assert "CUDA available" in failed.value.metadata["prepare"]["reason"]
    assert len(failed.value.metadata["failures"]) == 3
    assert live_of(fake_vast, provider) == []


async def test_a_create_that_times_out_is_found_by_its_label_and_used(
    fake_vast: FakeVastProcess, make_provider: Any
) -> None:
    machines = Blocks.take()
    provider = await make_provider(machines)
    before = len(fake_vast.ledger()["instances"])
    fake_vast.faults(create_timeouts=1)
    meta = await provider.create_instance(request("gpu-slow-create"))
    created = fake_vast.ledger()["instances"][before:]
    assert [r["id"] for r in created] == [meta["vast_id"]]  # reconciled: no second instance, none leaked
    await provider.delete_instance("gpu-slow-create", meta)
    assert live_of(fake_vast, provider) == []


async def test_429_and_5xx_are_retried_with_backoff(fake_vast: FakeVastProcess, make_provider: Any) -> None:
    machines = Blocks.take()
    provider = await make_provider(machines)
    counts = fake_vast.ledger()["counts"]
    fake_vast.faults(http_5xx=3)
    meta = await provider.create_instance(request("gpu-5xx"))
    fake_vast.faults(rate_scale=1.0)  # the documented intervals: one listing a second per identity
    try:
        for _ in range(3):  # back to back: the 2nd and 3rd get 429 and are retried until they pass
            await provider.list_instances()
    finally:
        fake_vast.faults(rate_scale=0.02)
    after = fake_vast.ledger()["counts"]
    assert after.get("5xx", 0) - counts.get("5xx", 0) == 3
    assert after.get("429", 0) >= counts.get("429", 0) + 2
    await provider.delete_instance("gpu-5xx", meta)
    assert live_of(fake_vast, provider) == []


async def test_concurrent_creates_rent_distinct_offers_spread_over_machines(
    fake_vast: FakeVastProcess, make_provider: Any
) -> None:
    machines = Blocks.take()  # machines[0] has two asks and is the cheapest: spreading uses it once
    provider = await make_provider(machines)
    metas = await asyncio.gather(*(provider.create_instance(request(f"gpu-par{i}")) for i in range(3)))
    assert len({m["ask_id"] for m in metas}) == 3
    assert sorted(m["machine_id"] for m in metas) == machines[:3]
    for i, meta in enumerate(metas):
        await provider.delete_instance(f"gpu-par{i}", meta)
    assert live_of(fake_vast, provider) == []


async def test_a_budget_cap_is_never_exceeded(fake_vast: FakeVastProcess, make_provider: Any) -> None:
    machines = Blocks.take()  # $0.30, 0.31, 0.32 ... per hour
    provider = await make_provider(machines, max_total_per_hour=0.65)
    assert provider.capacity(request("x").shape) >= 1
    metas = await asyncio.gather(
        *(provider.create_instance(request(f"gpu-b{i}")) for i in range(3)), return_exceptions=True
    )
    made = [m for m in metas if isinstance(m, dict)]
    assert len(made) == 2, metas  # 0.30 + 0.31; a third would pass 0.65
    assert "budget" in str(next(m for m in metas if isinstance(m, Exception)))
    assert provider.capacity(request("x").shape) == 0
    spent = sum(r["dph"] for r in live_of(fake_vast, provider))
    assert spent <= 0.65
    for i, meta in enumerate(metas):
        if isinstance(meta, dict):
            await provider.delete_instance(f"gpu-b{i}", meta)


async def test_a_lost_instance_counts_against_the_budget_until_its_destroy_is_confirmed(
    fake_vast: FakeVastProcess, make_provider: Any
) -> None:
    machines = Blocks.take()  # $0.30, 0.31, 0.32 ... per hour
    provider = await make_provider(machines, max_total_per_hour=0.65, **QUICK)
    metas = [await provider.create_instance(request(f"gpu-l{i}")) for i in range(2)]
    fake_vast.control(f"instances/{metas[0]['vast_id']}/offline")
    listing = {i.name: i for i in await provider.list_instances()}
    assert listing["gpu-l0"].status == "gone"
    assert provider.capacity(request("x").shape) == 0  # the lost host still bills until destroyed
    with pytest.raises(Exception, match="budget"):
        await provider.create_instance(request("gpu-l2"))
    await provider.delete_instance("gpu-l0", metas[0])
    assert provider.capacity(request("x").shape) >= 1
    third = await provider.create_instance(request("gpu-l2"))
    assert sum(r["dph"] for r in live_of(fake_vast, provider)) <= 0.65
    await provider.delete_instance("gpu-l1", metas[1])
    await provider.delete_instance("gpu-l2", third)
    assert live_of(fake_vast, provider) == [] and provider.committed_per_hour() == 0


async def test_offline_and_preempted_hosts_are_reported_gone_with_the_reason(
    fake_vast: FakeVastProcess, make_provider: Any
) -> None:
    machines = Blocks.take()
    provider = await make_provider(machines, interruptible=True)
    a = await provider.create_instance(request("gpu-off"))
    b = await provider.create_instance(request("gpu-pre"))
    fake_vast.control(f"instances/{a['vast_id']}/offline")
    fake_vast.control(f"instances/{b['vast_id']}/preempt")
    listing = {i.name: i for i in await provider.list_instances()}
    assert listing["gpu-off"].status == "gone" and "offline" in (listing["gpu-off"].reason or "")
    assert listing["gpu-pre"].status == "gone" and "preempted" in (listing["gpu-pre"].reason or "")
    await provider.delete_instance("gpu-off", a)
    await provider.delete_instance("gpu-pre", b)
    assert live_of(fake_vast, provider) == []  # a stopped instance is destroyed, not left billing storage


async def test_vast_ai_s_cause_outranks_the_host_symptom_seen_first(
    fake_vast: FakeVastProcess, make_provider: Any
) -> None:
    machines = Blocks.take()
    provider = await make_provider(machines)
    meta = await provider.create_instance(request("gpu-first"))
    r = provider.rented["gpu-first"]
    r.status, r.reason = "gone", "unhealthy: 0 GPUs visible, 1 expected"  # as the health sampler saw it
    fake_vast.control(f"instances/{meta['vast_id']}/offline")
    listing = {i.name: i for i in await provider.list_instances()}
    assert listing["gpu-first"].status == "gone"
    assert "host offline" in (listing["gpu-first"].reason or ""), listing["gpu-first"]
    await provider.delete_instance("gpu-first", meta)
    assert live_of(fake_vast, provider) == []


async def test_an_unhealthy_gpu_makes_the_instance_gone_with_its_health_history(
    fake_vast: FakeVastProcess, make_provider: Any
) -> None:
    machines = Blocks.take()
    provider = await make_provider(machines)
    meta = await provider.create_instance(request("gpu-ecc"))
    for _ in range(100):
        listing = {i.name: i for i in await provider.list_instances()}
        if listing["gpu-ecc"].metadata.get("health"):
            break
        await asyncio.sleep(0.1)
    sample = listing["gpu-ecc"].metadata["health"]
    assert sample["healthy"] and sample["gpus"][0]["name"] == "RTX 4090" and sample["disk_free"] > 0
    fake_vast.control(
        f"instances/{meta['vast_id']}/gpus",
        {"gpus": [{"name": "RTX 4090", "memory_mb": 24564, "ecc_errors": 3, "temperature": 50}]},
    )
    for _ in range(100):
        listing = {i.name: i for i in await provider.list_instances()}
        if listing["gpu-ecc"].status == "gone":
            break
        await asyncio.sleep(0.1)
    assert listing["gpu-ecc"].status == "gone"
    assert "unhealthy: GPU 0 has 3 uncorrected ECC errors" in (listing["gpu-ecc"].reason or "")
    await provider.delete_instance("gpu-ecc", meta)
    assert live_of(fake_vast, provider) == []


async def test_an_instance_labelled_for_the_collection_but_unknown_is_destroyed(
    fake_vast: FakeVastProcess, make_provider: Any
) -> None:
    machines = Blocks.take()
    provider = await make_provider(machines)
    stray = await provider.client.rent(
        machines[5] * 10, {"image": "x", "label": f"{provider.label_head}stray"}, timeout=10
    )
    foreign = await provider.client.rent(
        machines[6] * 10, {"image": "x", "label": "corral:nosuch:thing"}, timeout=10
    )
    await provider.list_instances()
    for _ in range(50):
        if not any(r["id"] == stray for r in fake_vast.live()):
            break
        await asyncio.sleep(0.1)
    assert not any(r["id"] == stray for r in fake_vast.live())
    assert provider.unaccounted == {foreign: "corral:nosuch:thing"}  # reported, not touched
    await provider.client.destroy(foreign)
