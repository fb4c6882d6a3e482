"""Autoscaling decisions: pool size from fair shares of future capacity, idle release, job-private."""

from __future__ import annotations

from corral.domain.autoscaling import (
    InstanceView,
    PoolLimits,
    pool_instances_to_create,
    pool_instances_to_release,
    private_jobs_to_serve,
)
from corral.domain.fair_share import UserDemand
from corral.domain.scheduling import ReadyJob

CORE = 1000
GI = 1 << 30


def limits(**kw: object) -> PoolLimits:
    base: dict[str, object] = {"cores_mcpu": 2 * CORE, "memory_bytes": 4 * GI, "max_instances": 10,
                               "max_new_per_loop": 10}
    base.update(kw)
    return PoolLimits(**base)  # type: ignore[arg-type]


def test_an_empty_pool_grows_to_fit_ready_cores() -> None:
    demands = {"alice": UserDemand(0, 5 * CORE)}
    assert pool_instances_to_create(limits(), demands, []) == 3  # 5 cores / 2 per instance


def test_growth_is_capped_per_loop_and_by_max_instances() -> None:
    demands = {"alice": UserDemand(0, 100 * CORE)}
    assert pool_instances_to_create(limits(max_new_per_loop=2), demands, []) == 2
    existing = [InstanceView(f"i{i}", pending=False, free_mcpu=0, busy=True) for i in range(9)]
    assert pool_instances_to_create(limits(), demands, existing) == 1
    assert pool_instances_to_create(limits(max_live_instances=9), demands, existing) == 0


def test_pending_instances_count_as_coming_capacity() -> None:
    demands = {"alice": UserDemand(0, 4 * CORE)}
    pending = [InstanceView("p1", pending=True, free_mcpu=0), InstanceView("p2", pending=True, free_mcpu=0)]
    assert pool_instances_to_create(limits(), demands, pending) == 0


def test_free_cores_on_live_instances_are_used_before_creating() -> None:
    demands = {"alice": UserDemand(2 * CORE, 3 * CORE)}
    live = [InstanceView("i1", pending=False, free_mcpu=2 * CORE, busy=True)]
    assert pool_instances_to_create(limits(), demands, live) == 1  # 3 ready - 2 free = 1 core: one instance


def test_standing_workers_are_kept_without_demand() -> None:
    assert pool_instances_to_create(limits(min_instances=2), {}, []) == 2
    idle = [InstanceView(f"i{i}", pending=False, free_mcpu=2 * CORE, idle_since=0.0) for i in range(3)]
    assert pool_instances_to_release(limits(min_instances=2, idle_seconds=10), idle, now=100.0) == ["i0"]


def test_only_instances_idle_long_enough_are_released_longest_idle_first() -> None:
    views = [
        InstanceView("busy", pending=False, free_mcpu=0, busy=True),
        InstanceView("pending", pending=True, free_mcpu=0),
        InstanceView("recent", pending=False, free_mcpu=2 * CORE, idle_since=95.0),
        InstanceView("old", pending=False, free_mcpu=2 * CORE, idle_since=10.0),
        InstanceView("older", pending=False, free_mcpu=2 * CORE, idle_since=5.0),
    ]
    assert pool_instances_to_release(limits(idle_seconds=30), views, now=100.0) == ["older", "old"]


def test_gpu_demand_sizes_a_gpu_pool() -> None:
    gpu = limits(gpus=2, gpu_type="t4", cores_mcpu=8 * CORE)
    demands = {"alice": UserDemand(0, 2 * CORE)}
    assert pool_instances_to_create(gpu, demands, [], ready_gpus=4) == 2  # 4 GPUs / 2 per instance


def test_a_job_fits_a_pool_shape_only_with_enough_gpus_of_its_type() -> None:
    gpu = limits(gpus=2, gpu_type="t4")
    assert gpu.fits(ReadyJob(1, 1, "u", CORE, GI, 0, gpus=2, gpu_type="t4"))
    assert gpu.fits(ReadyJob(1, 2, "u", CORE, GI, 0, gpus=1))
    assert not gpu.fits(ReadyJob(1, 3, "u", CORE, GI, 0, gpus=1, gpu_type="a100"))
    assert not gpu.fits(ReadyJob(1, 4, "u", CORE, GI, 0, gpus=4))
    assert not limits().fits(ReadyJob(1, 5, "u", 3 * CORE, GI, 0))


def test_job_private_serves_each_job_once_within_caps() -> None:
    jobs = [ReadyJob(1, j, "u", CORE, GI, 0) for j in range(1, 6)]
    chosen = private_jobs_to_serve(jobs, {(1, 1)}, live=1, max_instances=4, max_new=10)
    assert [j.job_id for j in chosen] == [2, 3, 4]
    assert private_jobs_to_serve(jobs, set(), live=0, max_instances=10, max_new=2) == jobs[:2]
