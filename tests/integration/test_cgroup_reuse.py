"""Job cgroups reused from one job to the next (cgroup v1, runtimes/cgroup_pool.py), on both runtimes that
use them: a reused cgroup must carry no limit, usage, OOM kill or charge of the job before, and idle ones
must not outlive the worker. Real cgroups; each job reads its own cgroup's files to show what it got."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.integration.runtime_support import (
    CGROUP_RUNTIMES,
    Make,
    MiB,
    released,
    request_builder,
    run,
    started_runtime,
    started_v1_runtime,
)

from corral.runtimes import process as process_module
from corral.runtimes.cgroup_pool import CgroupPool
from corral.runtimes.cgroups import NO_MEMORY_LIMIT, Limits, V1Cgroups, safe_name
from corral.runtimes.process import ProcessRuntime

BURN = "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done"  # ~0.3 s of CPU


@pytest.fixture(params=CGROUP_RUNTIMES)
async def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ProcessRuntime]:
    rt = await started_v1_runtime(request.param, tmp_path, "cgroups are reused on v1 only (v2: one a job)")
    yield rt
    await rt.close()


@pytest.fixture
def make(tmp_path: Path) -> Make:
    return request_builder(tmp_path)


def pool_of(runtime: ProcessRuntime) -> CgroupPool:
    assert runtime.cgroup_pool is not None
    return runtime.cgroup_pool


def own_cgroup(controller: str) -> str:
    """Shell: the job's own v1 cgroup directory of `controller`, from /proc/self/cgroup."""
    line = f"grep -E '^[0-9]+:([a-z,]*,)?{controller}(,[a-z,]*)?:' /proc/self/cgroup | cut -d: -f3"
    return f"/sys/fs/cgroup/{controller}$({line})"


# Prints the job's cgroup name, memory limit, CPU quota, pids limit and its peak memory so far.
PROBE = (
    f"basename {own_cgroup('memory')}; cat {own_cgroup('memory')}/memory.limit_in_bytes "
    f"{own_cgroup('cpu')}/cpu.cfs_quota_us {own_cgroup('pids')}/pids.max "
    f"{own_cgroup('memory')}/memory.max_usage_in_bytes"
)


def dirs_named(runtime: ProcessRuntime, name: str) -> list[Path]:
    assert isinstance(runtime.cgroups, V1Cgroups)
    return [base / safe_name(name) for base in dict.fromkeys(runtime.cgroups.bases.values())]


async def test_the_next_job_with_the_same_limits_gets_the_cgroup_with_nothing_of_the_last_job(
    runtime: ProcessRuntime, make: Make
) -> None:
    pool = pool_of(runtime)
    runtime.pids_limit = 777
    limits = {"memory_bytes": 96 * MiB, "cores_mcpu": 2000}
    first = make(f"{BURN}; head -c 40M /dev/zero | tail > /dev/null", **limits)
    ran = await run(runtime, first)
    assert ran.state == "succeeded", first.log_path.read_text()
    assert ran.max_memory_bytes > 32 * MiB and ran.cpu_seconds > 0.1, ran
    await released(runtime)
    assert pool.idle_count() == 1, "a clean cgroup is kept"
    made = pool.made

    second = make(PROBE, **limits)
    probed = await run(runtime, second)
    assert probed.state == "succeeded", second.log_path.read_text()
    name, memory, quota, pids, peak = second.log_path.read_text().split()[:5]
    assert (pool.made, pool.reused) == (made, 1), "the kept cgroup was not reused"
    assert name == safe_name(second.key)  # named by the job using it, not the one before
    assert not any(d.exists() for d in dirs_named(runtime, first.key))
    assert (int(memory), int(quota), pids) == (96 * MiB, 200_000, "777")  # its own (the same) limits
    assert int(peak) < 8 * MiB and probed.max_memory_bytes < 8 * MiB, (peak, probed)  # not the first's 40M
    assert probed.cpu_seconds < ran.cpu_seconds / 4, (ran.cpu_seconds, probed.cpu_seconds)


async def test_a_job_with_other_limits_gets_a_new_cgroup_with_its_own(
    runtime: ProcessRuntime, make: Make
) -> None:
    pool = pool_of(runtime)
    runtime.pids_limit = 777
    assert (await run(runtime, make("true", memory_bytes=64 * MiB, cores_mcpu=2000))).state == "succeeded"
    await released(runtime)
    assert pool.idle_count() == 1
    runtime.pids_limit = 0  # and no memory limit: "none" must not be the kept cgroup's 64 MiB
    req = make(PROBE, memory_bytes=0, cores_mcpu=250)
    assert (await run(runtime, req)).state == "succeeded", req.log_path.read_text()
    _, memory, quota, pids, _ = req.log_path.read_text().split()[:5]
    assert (int(memory), int(quota), pids) == (NO_MEMORY_LIMIT, 25_000, "max")
    assert pool.reused == 0 and pool.made == 2


async def test_a_cgroup_that_saw_an_oom_kill_is_removed_not_reused(
    runtime: ProcessRuntime, make: Make
) -> None:
    """v1 cannot reset a cgroup's OOM kill count: the next job would fail "out of memory" for nothing."""
    pool = pool_of(runtime)
    killed_req = make("head -c 200M /dev/zero | tail > /dev/null", memory_bytes=64 * MiB)
    killed = await run(runtime, killed_req)
    assert killed.out_of_memory, killed
    await released(runtime)
    assert pool.idle_count() == 0
    assert not any(d.exists() for d in dirs_named(runtime, killed_req.key)), "its cgroup is left behind"
    after = await run(runtime, make("exit 3", memory_bytes=64 * MiB))
    assert after.state == "failed" and after.exit_code == 3 and not after.out_of_memory, after
    assert pool.reused == 0


async def test_a_cgroup_still_charged_with_the_jobs_files_is_removed_not_reused(
    runtime: ProcessRuntime, make: Make
) -> None:
    """Page cache of a file the job wrote stays charged to its cgroup after it ends: the next job would
    start with it against its limit and in its peak."""
    pool = pool_of(runtime)
    req = make('head -c 30M /dev/zero > "${CORRAL_IO_DIR:-/io}/kept.bin"', memory_bytes=256 * MiB)
    assert (await run(runtime, req)).state == "succeeded", req.log_path.read_text()
    assert (req.io_dir / "kept.bin").stat().st_size == 30 * MiB
    await released(runtime)
    assert pool.idle_count() == 0
    assert not any(d.exists() for d in dirs_named(runtime, req.key))
    probe = make(PROBE, memory_bytes=256 * MiB)
    assert (await run(runtime, probe)).state == "succeeded"
    assert int(probe.log_path.read_text().split()[4]) < 8 * MiB


@pytest.mark.parametrize("kind", CGROUP_RUNTIMES[:1])
async def test_a_host_job_that_rewrites_its_own_limits_leaves_them_to_no_one(
    kind: str, tmp_path: Path, make: Make
) -> None:
    """A host-runtime job runs as the worker's user and may write its cgroup's files; its cgroup is then
    not fit for another job. (The process sandbox's jobs cannot write them.)"""
    runtime = await started_runtime(kind, tmp_path / "w")
    try:
        await _rewrites_its_own_limits(runtime, make)
    finally:
        await runtime.close()


async def _rewrites_its_own_limits(runtime: ProcessRuntime, make: Make) -> None:
    assert isinstance(runtime.cgroups, V1Cgroups) or pytest.skip("cgroup v1 only")
    pool = pool_of(runtime)
    req = make(f"echo 50000 > {own_cgroup('cpu')}/cpu.cfs_quota_us", cores_mcpu=2000)
    assert (await run(runtime, req)).state == "succeeded", req.log_path.read_text()
    await released(runtime)
    assert pool.idle_count() == 0
    probe = make(PROBE, cores_mcpu=2000)
    assert (await run(runtime, probe)).state == "succeeded"
    assert int(probe.log_path.read_text().split()[2]) == 200_000 and pool.reused == 0


async def test_the_same_key_again_takes_its_kept_cgroup_or_replaces_it(runtime: ProcessRuntime) -> None:
    """A kept cgroup keeps its last job's name: the same name asked again must never make a second
    cgroup on top of it (the kernel's mkdir of an existing name is the same directory)."""
    pool = pool_of(runtime)
    same, other = Limits(64 * MiB, 1000, 100), Limits(128 * MiB, 500, 0)
    group = pool.take("again", same)
    assert pool.give_back(group) and pool.idle_count() == 1
    assert pool.take("again", same) is group and pool.reused == 1
    assert pool.give_back(group) and pool.idle_count() == 1
    replaced = pool.take("again", other)
    assert replaced is not group and pool.idle_count() == 0 and pool.made == 2
    mem = dirs_named(runtime, "again")[0]
    assert int((mem / "memory.limit_in_bytes").read_text()) == 128 * MiB
    assert pool.give_back(replaced)


@pytest.mark.parametrize("kind", CGROUP_RUNTIMES[:1])
async def test_kept_cgroups_go_when_the_runtime_closes_and_after_a_crash(
    kind: str, tmp_path: Path, make: Make
) -> None:
    crashed = await started_runtime(kind, tmp_path / "a", name="reuse-crash")
    assert isinstance(crashed.cgroups, V1Cgroups) or pytest.skip("cgroup v1 only")
    reqs = [make("true") for _ in range(3)]
    assert all(r.state == "succeeded" for r in await asyncio.gather(*(run(crashed, q) for q in reqs)))
    await released(crashed)
    kept = [d for q in reqs for d in dirs_named(crashed, q.key) if d.exists()]
    assert kept and pool_of(crashed).idle_count() == 3
    # The worker dies without closing its runtime; its next start removes what it kept.
    restarted = await started_runtime(kind, tmp_path / "b", name="reuse-crash")
    assert not any(d.exists() for d in kept), "kept cgroups of a dead worker outlive its restart"
    assert (await run(restarted, make("true"))).state == "succeeded"
    await released(restarted)
    assert pool_of(restarted).idle_count() == 1
    await restarted.close()
    assert isinstance(restarted.cgroups, V1Cgroups)
    assert not any(base.exists() for base in restarted.cgroups.bases.values()), "closing left cgroups"


async def test_a_cgroup_idle_for_a_while_is_removed(
    runtime: ProcessRuntime, make: Make, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kept cgroups do not wait for the runtime's close: a worker killed while idle leaves none."""
    monkeypatch.setattr(process_module, "KEEP_IDLE", 0.3)
    pool = pool_of(runtime)
    req = make("true")
    assert (await run(runtime, req)).state == "succeeded"
    await released(runtime)
    assert pool.idle_count() == 1 and all(d.exists() for d in dirs_named(runtime, req.key))
    for _ in range(100):
        if pool.idle_count() == 0:
            break
        await asyncio.sleep(0.05)
    assert pool.idle_count() == 0 and not any(d.exists() for d in dirs_named(runtime, req.key))
    assert (await run(runtime, make("true"))).state == "succeeded" and pool.made == 2
