"""However many pilots run, a listing costs ONE `squeue` (counted at the command layer), and collections on
the same cluster share it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from tests.slurm.conftest import request_for
from tests.slurm.infra import CountingRunner

from corral.config import Settings
from corral.providers.config import InstanceCollectionConfig
from corral.providers.slurm import SlurmProvider, cluster
from corral.providers.slurm.options import SlurmOptions
from corral.providers.slurm.runners import LocalRunner


async def test_one_squeue_per_listing_whatever_the_number_of_pilots(
    slurm_provider: Any, slurm_conf: str
) -> None:
    runner = CountingRunner(LocalRunner({"SLURM_CONF": slurm_conf}))
    provider: SlurmProvider = await slurm_provider(runner=runner, cores=1, memory="64Mi", status_max_age=0)
    for n_pilots in (1, 4, 12):
        while len(provider._pilots) < n_pilots:
            await provider.create_instance(request_for(provider, f"p{len(provider._pilots)}"))
        before = runner.count("squeue")
        for _ in range(3):
            listed = await provider.list_instances()
            assert {i.name for i in listed} == {f"p{k}" for k in range(n_pilots)}
            assert all(i.status in ("pending", "running") for i in listed)
        assert runner.count("squeue") - before == 3  # one per listing, not one per pilot
    assert runner.count("sacct") == 0  # nobody left the queue: the completion log is never read
    assert runner.count("scontrol") == 0


async def test_collections_on_one_cluster_share_one_squeue(
    slurm_conf: str, tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    runners: list[CountingRunner] = []

    def counting(options: SlurmOptions) -> CountingRunner:
        runners.append(CountingRunner(LocalRunner(options.env)))
        return runners[-1]

    monkeypatch.setattr(cluster, "make_runner", counting)
    options = {"env": {"SLURM_CONF": slurm_conf}, "log_dir": str(tmp_path), "status_max_age": 0}
    providers = [
        SlurmProvider(InstanceCollectionConfig(name=f"share{k}", provider="slurm", shape={"cores": 1},
                                               provider_options=options), Settings(home=tmp_path))
        for k in range(3)
    ]
    for p in providers:
        await p.start("http://127.0.0.1:9")
    try:
        assert len(runners) == 1  # one link (one runner, one SSH connection when remote) for the cluster
        before = runners[0].count("squeue")
        await asyncio.gather(*(p.list_instances() for p in providers))  # one autoscaler tick
        assert runners[0].count("squeue") - before == 1  # concurrent listings share the squeue in flight
    finally:
        for p in providers:
            await p.stop()


async def test_listings_one_after_another_share_a_recent_squeue_and_new_pilots_are_never_missing(
    slurm_provider: Any, slurm_conf: str
) -> None:
    runner = CountingRunner(LocalRunner({"SLURM_CONF": slurm_conf}))
    provider: SlurmProvider = await slurm_provider(runner=runner, status_max_age=30)
    await provider.list_instances()  # the squeue answer of this "tick"
    await provider.create_instance(request_for(provider, "late"))  # submitted after it was taken
    listed = {i.name: i for i in await provider.list_instances()}
    assert runner.count("squeue") == 1 and runner.count("sacct") == 0
    assert listed["late"].status == "pending"  # not "gone": squeue simply had not seen it yet
