"""The vastai provider against the fake vast.ai: renting, bring-up over SSH, listing, destroying."""

from __future__ import annotations

from typing import Any

from tests.fakes.vastai.process import FakeVastProcess
from tests.vastai.conftest import NOWHERE, Blocks

from corral.providers.base import InstanceRequest, MachineShape

SHAPE = MachineShape("gpu", cores=1, memory_bytes=256 << 20, gpus=1, gpu_type="RTX 4090")


def request(name: str) -> InstanceRequest:
    return InstanceRequest(name, "gpu", SHAPE, f"token-{name}", NOWHERE)


def live_of(fake: FakeVastProcess, provider: Any) -> list[dict[str, Any]]:
    return fake.live(provider.label_head)


async def test_a_rented_host_is_brought_up_with_its_gpus_checked_and_destroyed_on_delete(
    fake_vast: FakeVastProcess, make_provider: Any
) -> None:
    machines = Blocks.take()
    provider = await make_provider(machines)
    meta = await provider.create_instance(request("gpu-a1"))
    assert meta["machine_id"] == machines[0]  # the cheapest per performance
    assert meta["gpus"] == ["RTX 4090"]
    assert set(meta["phases"]) >= {"search", "create", "running", "ssh", "prepare", "worker"}
    assert meta["cost_per_core_hour"] == meta["price_per_hour"] == 0.30
    (live,) = live_of(fake_vast, provider)
    assert live["label"] == f"{provider.label_head}gpu-a1" and live["actual_status"] == "running"
    listing = {i.name: i for i in await provider.list_instances()}
    assert listing["gpu-a1"].status == "running"
    await provider.delete_instance("gpu-a1", meta)
    assert live_of(fake_vast, provider) == []
    (row,) = [r for r in fake_vast.ledger()["instances"] if r["id"] == meta["vast_id"]]
    assert row["destroyed_at"] is not None and row["running_seconds"] > 0
