"""The SLURM provider against the real 4-node cluster: pilots submitted, listed, cancelled, and the reason
each one ended (cancelled, time limit, node failure, preemption) read from squeue or the completion log."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from tests.slurm.conftest import request_for
from tests.slurm.infra import slurm, wait_async

from corral.errors import InvalidInput
from corral.providers.base import InstanceProvider, ProviderInstance
from corral.providers.slurm import SlurmProvider, make_provider
from corral.providers.slurm.commands import SlurmCommandFailed


async def status_of(provider: SlurmProvider, name: str) -> ProviderInstance | None:
    return next((i for i in await provider.list_instances() if i.name == name), None)


async def wait_status(
    provider: SlurmProvider, name: str, status: str, timeout: float = 60
) -> ProviderInstance:
    async def probe() -> ProviderInstance | None:
        found = await status_of(provider, name)
        return found if found is not None and found.status == status else None

    found: ProviderInstance = await wait_async(f"{name} to be {status}", probe, timeout=timeout)
    return found


def job_state(conf: str, job_id: str) -> str:
    return slurm(conf, "squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T", check=False).strip()


def test_make_provider_is_an_instance_provider(slurm_conf: str, tmp_path: Any) -> None:
    from corral.config import Settings
    from corral.providers.config import InstanceCollectionConfig

    collection = InstanceCollectionConfig(name="hpc", provider="slurm", shape={"cores": 2},
                                          provider_options={"partition": "debug", "time_limit": "1:00:00"})
    provider = make_provider(collection, Settings(home=tmp_path))
    assert isinstance(provider, InstanceProvider)
    assert provider.collection.shape is not None and provider.collection.shape.cores == 2


def test_a_typo_in_provider_options_names_the_key(tmp_path: Any) -> None:
    from corral.config import Settings
    from corral.providers.config import InstanceCollectionConfig

    collection = InstanceCollectionConfig(name="hpc", provider="slurm", provider_options={"partiton": "x"})
    with pytest.raises(InvalidInput, match=r"instance_collections\[hpc\]\.provider_options\.partiton"):
        make_provider(collection, Settings(home=tmp_path))
    bad_time = InstanceCollectionConfig(name="hpc", provider="slurm", provider_options={"time_limit": "1h"})
    with pytest.raises(InvalidInput, match=r"time_limit.*hh:mm:ss"):
        make_provider(bad_time, Settings(home=tmp_path))


async def test_pilot_is_listed_then_scancel_reports_cancelled(slurm_provider: Any, slurm_conf: str) -> None:
    provider: SlurmProvider = await slurm_provider()
    meta = await provider.create_instance(request_for(provider, "p1"))
    job_id = str(meta["job_id"])
    running = await wait_status(provider, "p1", "running")
    assert running.metadata["job_id"] == job_id
    assert running.metadata["nodes"] in {"n1", "n2", "n3", "n4"}
    slurm(slurm_conf, "scancel", job_id)  # someone else cancels our pilot
    gone = await wait_status(provider, "p1", "gone")
    assert gone.reason == "cancelled"


async def test_a_pilot_that_left_the_queue_is_explained_by_the_completion_log(
    slurm_provider: Any, slurm_conf: str
) -> None:
    from tests.slurm.infra import CountingRunner

    from corral.providers.slurm.runners import LocalRunner

    runner = CountingRunner(LocalRunner({"SLURM_CONF": slurm_conf}))
    provider: SlurmProvider = await slurm_provider(runner=runner)
    meta = await provider.create_instance(request_for(provider, "p1"))
    job_id = str(meta["job_id"])
    await wait_status(provider, "p1", "running")
    slurm(slurm_conf, "scancel", job_id)

    async def left_queue() -> bool:
        return job_id not in slurm(slurm_conf, "squeue", "-h", "-o", "%i")  # squeue's default states

    await wait_async("the pilot to leave squeue", left_queue, timeout=30)
    before = runner.count("sacct")
    gone = await status_of(provider, "p1")
    assert gone is not None and gone.status == "gone" and gone.reason == "cancelled"
    assert gone.metadata["slurm_state"] == "CANCELLED"
    assert runner.count("sacct") == before + 1  # told by `sacct -c`, not by squeue
    # Read once: asking again does not read the completion log again.
    again = await status_of(provider, "p1")
    assert again is not None and again.reason == "cancelled" and runner.count("sacct") == before + 1


async def test_delete_instance_cancels_and_is_idempotent(slurm_provider: Any, slurm_conf: str) -> None:
    provider: SlurmProvider = await slurm_provider()
    meta = await provider.create_instance(request_for(provider, "p1"))
    await wait_status(provider, "p1", "running")
    await provider.delete_instance("p1", meta)
    await wait_async("the pilot to end", lambda: _ended(slurm_conf, str(meta["job_id"])))
    await provider.delete_instance("p1", meta)  # again: not an error
    await provider.delete_instance("never-existed", {})


async def _ended(conf: str, job_id: str) -> bool:
    return job_state(conf, job_id) in {"CANCELLED", ""}


@pytest.mark.slow  # up to 30 s: SLURM checks time limits every 30 s
async def test_walltime_ending_reports_time_limit(slurm_provider: Any, slurm_conf: str) -> None:
    provider: SlurmProvider = await slurm_provider(time_limit="5")
    meta = await provider.create_instance(request_for(provider, "p1"))
    job_id = str(meta["job_id"])
    await wait_status(provider, "p1", "running")
    assert "TimeLimit=00:05:00" in slurm(slurm_conf, "scontrol", "show", "job", job_id)
    # Bring the end of the walltime forward (limits are whole minutes; the check runs every 30 s).
    end = (dt.datetime.now() + dt.timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%S")
    slurm(slurm_conf, "scontrol", "update", f"JobId={job_id}", f"EndTime={end}")
    gone = await wait_status(provider, "p1", "gone", timeout=90)
    assert gone.reason == "time limit"


async def test_node_failure_reports_node_failure(slurm_provider: Any, slurm_conf: str) -> None:
    provider: SlurmProvider = await slurm_provider(sbatch_args=["--nodelist=n3"])
    await provider.create_instance(request_for(provider, "p1"))
    await wait_status(provider, "p1", "running")
    slurm(slurm_conf, "scontrol", "update", "NodeName=n3", "State=DOWN", "Reason=corral-test")
    try:
        gone = await wait_status(provider, "p1", "gone")
        assert gone.reason == "node failure"
    finally:
        slurm(slurm_conf, "scontrol", "update", "NodeName=n3", "State=RESUME", check=False)


async def test_preemption_reports_preempted(slurm_provider: Any, slurm_conf: str) -> None:
    provider: SlurmProvider = await slurm_provider(partition="debug", sbatch_args=["--nodelist=n4"])
    await provider.create_instance(request_for(provider, "p1"))
    await wait_status(provider, "p1", "running")
    # A job of the higher-tier partition needs the whole node: the pilot is preempted (PreemptMode=CANCEL).
    slurm(slurm_conf, "sbatch", "-p", "urgent", "-w", "n4", "-c", "8", "--mem=100", "-o", "/dev/null",
          "-J", "corral-test-urgent", "--wrap", "true")
    gone = await wait_status(provider, "p1", "gone")
    assert gone.reason == "preempted"


async def test_a_configured_driver_url_is_what_pilots_call(slurm_provider: Any) -> None:
    provider: SlurmProvider = await slurm_provider(extra_options={"driver_url": "http://headnode:8642"})
    meta = await provider.create_instance(request_for(provider, "p1"))
    assert meta["worker_url"] == "http://headnode:8642"


async def test_gpu_shape_asks_gres(slurm_provider: Any, slurm_conf: str) -> None:
    provider: SlurmProvider = await slurm_provider(gpus=2)
    meta = await provider.create_instance(request_for(provider, "p1"))
    await wait_status(provider, "p1", "running")
    shown = slurm(slurm_conf, "scontrol", "show", "job", str(meta["job_id"]))
    assert "gres:gpu:2" in shown


async def test_sbatch_refusal_names_slurms_reason(slurm_provider: Any) -> None:
    provider: SlurmProvider = await slurm_provider(partition="nosuchpartition")
    with pytest.raises(SlurmCommandFailed, match=r"(?i)partition"):
        await provider.create_instance(request_for(provider, "p1"))
    assert await provider.list_instances() == []


async def test_pilots_of_other_collections_are_not_ours(slurm_provider: Any) -> None:
    mine: SlurmProvider = await slurm_provider()
    theirs: SlurmProvider = await slurm_provider()
    await mine.create_instance(request_for(mine, "a"))
    await theirs.create_instance(request_for(theirs, "b"))
    assert {i.name for i in await mine.list_instances()} == {"a"}
    assert {i.name for i in await theirs.list_instances()} == {"b"}


async def test_a_restarted_provider_adopts_its_running_pilots(slurm_provider: Any) -> None:
    first: SlurmProvider = await slurm_provider()
    meta = await first.create_instance(request_for(first, "p1"))
    await wait_status(first, "p1", "running")
    again = SlurmProvider(first.collection, first.settings)  # a new driver process, same configuration
    await again.start(first._driver_url)
    try:
        found = await status_of(again, "p1")
        assert found is not None and found.status == "running" and found.metadata["job_id"] == meta["job_id"]
    finally:
        await again.stop()


async def test_job_private_allocation_is_sized_for_its_job(slurm_provider: Any, slurm_conf: str) -> None:
    from corral.providers.base import InstanceRequest, MachineShape

    provider: SlurmProvider = await slurm_provider(kind="job_private")
    big = MachineShape(name="job-1.1", cores=6, memory_bytes=1536 * 1024**2)  # what one job asks
    meta = await provider.create_instance(InstanceRequest("jp-1", provider.collection.name, big, "tok",
                                                          provider._driver_url))
    await wait_status(provider, "jp-1", "running")
    shown = slurm(slurm_conf, "scontrol", "show", "job", str(meta["job_id"]))
    assert "NumCPUs=6" in shown and "MinMemoryNode=1.50G" in shown


@pytest.mark.slow  # up to 30 s: SLURM sends the warning signal at its 30 s time-limit check
async def test_drain_before_the_walltime_ends_lets_the_pilot_exit_cleanly(
    slurm_provider: Any, slurm_conf: str
) -> None:
    provider: SlurmProvider = await slurm_provider(time_limit="10", drain_before_end=300)
    meta = await provider.create_instance(request_for(provider, "p1"))
    job_id = str(meta["job_id"])
    await wait_status(provider, "p1", "running")
    # 60 s left < 300: at its next check (every 30 s) SLURM sends SIGINT; the worker drains and exits.
    end = (dt.datetime.now() + dt.timedelta(seconds=60)).strftime("%Y-%m-%dT%H:%M:%S")
    slurm(slurm_conf, "scontrol", "update", f"JobId={job_id}", f"EndTime={end}")
    gone = await wait_status(provider, "p1", "gone", timeout=90)
    assert gone.reason == "worker exited"  # ended by itself before the walltime, not killed by it


async def test_without_a_record_of_why_a_pilot_ended_it_is_still_reported_gone(
    slurm_provider: Any, slurm_conf: str
) -> None:
    # history = "accounting" asks slurmdbd, which this cluster does not run: `sacct` fails.
    provider: SlurmProvider = await slurm_provider(history="accounting")
    meta = await provider.create_instance(request_for(provider, "p1"))
    job_id = str(meta["job_id"])
    await wait_status(provider, "p1", "running")
    slurm(slurm_conf, "scancel", job_id)

    async def left_queue() -> bool:
        return job_id not in slurm(slurm_conf, "squeue", "-h", "-o", "%i")

    await wait_async("the pilot to leave squeue", left_queue, timeout=30)
    gone = await status_of(provider, "p1")
    assert gone is not None and gone.status == "gone" and gone.reason == "left SLURM without a record"
