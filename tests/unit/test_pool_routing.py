"""The autoscaler's description of pools for the cheapest-pool rule (driver/pool_routing.py)."""

from __future__ import annotations

from corral.config import Settings
from corral.domain.capacity import Resources
from corral.domain.scheduling import ReadyJob
from corral.driver.collections import collection_limits
from corral.driver.instances import InstanceState
from corral.driver.pool_routing import (
    RoutablePool,
    cheapest_pool,
    pool_view,
    routable_pools,
    route_unnamed,
)
from corral.providers.config import InstanceCollectionConfig


def collection(
    name: str, provider: str, *, cores: float = 2, price: float = 0.0, gpus: int = 0, **extra: object
) -> InstanceCollectionConfig:
    shape = {"cores": cores, "memory": "4Gi", "gpus": gpus, "price_per_hour": price}
    return InstanceCollectionConfig.model_validate(
        {"name": name, "provider": provider, "shape": shape, **extra}
    )


def active(name: str, pool: str, cores_mcpu: int) -> InstanceState:
    inst = InstanceState(name, pool, "h", cores_mcpu, 4 << 30)
    inst.active = True
    return inst


def route(
    job: ReadyJob,
    cols: list[InstanceCollectionConfig],
    instances: list[InstanceState],
    growable: set[str],
    **settings: object,
) -> str:
    limits = {c.name: lim for c in cols if (lim := collection_limits(c))}
    return cheapest_pool(
        job,
        settings=Settings(cost_per_core_hour=0.05, **settings),  # type: ignore[arg-type]
        collections={c.name: c for c in cols},
        limits=limits,
        instances={i.name: i for i in instances},
        can_grow=lambda n: n in growable,
    )


JOB = ReadyJob(1, 1, "u", 1000, 1 << 30, 0)


def test_free_local_workers_win_over_pools_that_must_bring_up_an_instance() -> None:
    cols = [collection("lab", "ssh", price=0.0), collection("gpu", "vastai", price=0.8)]
    assert route(JOB, cols, [active("local-1", "default", 2000)], {"lab", "gpu"}) == "default"


def test_a_busy_local_pool_sends_the_job_to_the_growable_pool_that_comes_up_soonest() -> None:
    cols = [collection("gpu", "vastai", price=0.1), collection("hpc", "slurm", price=0.4)]
    draining = active("local-1", "default", 1000)
    draining.draining = True  # fits the job, but takes none now, and the local pool never grows
    assert route(JOB, cols, [draining], {"gpu", "hpc"}) == "hpc"  # slurm ~10 s beats renting ~240 s
    assert route(JOB, cols, [draining], {"gpu"}) == "gpu"  # the only pool that can start it


def test_among_pools_with_room_now_the_cheapest_wins_and_gpu_jobs_go_where_gpus_are() -> None:
    cols = [collection("lab", "ssh", price=0.2), collection("gpu", "vastai", price=0.6, gpus=1)]
    instances = [active("lab-1", "lab", 2000), active("gpu-1", "gpu", 2000)]
    instances[1].gpus = 1
    assert route(JOB, cols, instances, set()) == "lab"  # no local workers; lab is the cheaper per core
    gpu_job = ReadyJob(1, 2, "u", 1000, 1 << 30, 0, gpus=1)
    assert route(gpu_job, cols, instances, set()) == "gpu"


# ---- the driver's routing (route_unnamed): queued demand, the reason a job waits, nothing fits


def pools_of(cols: list[InstanceCollectionConfig], **settings: object) -> list[RoutablePool]:
    base = Settings(cost_per_core_hour=0.05, **settings)  # type: ignore[arg-type]
    return routable_pools(base.model_copy(update={"instance_collections": cols}))


def test_jobs_already_queued_use_up_a_pools_room_so_later_ones_spill_to_the_next_soonest() -> None:
    cols = [collection("lab", "ssh", price=0.4, max_instances=1)]
    local = active("local-1", "default", 2000)
    pools = pools_of(cols, local_workers=1)
    first = route_unnamed(JOB, pools, pool_view([local]), queued_mcpu={})
    assert first is not None and first.pool == "default"  # room now beats bringing up an instance
    # Two cores already queued on the local worker: the next job starts sooner on a new lab instance.
    spill = route_unnamed(JOB, pools, pool_view([local]), queued_mcpu={"default": 2000})
    assert spill is not None and spill.pool == "lab"
    assert "waiting for a new instance there (about 15s)" in spill.reason


def test_the_reason_names_the_chosen_pool_its_price_and_why_not_the_others() -> None:
    cols = [collection("small", "ssh", cores=1, price=0.05), collection("wide", "slurm", cores=4, price=2.0)]
    wide_job = ReadyJob(1, 3, "u", 2000, 1 << 30, 0)
    route = route_unnamed(wide_job, pools_of(cols, local_workers=0), pool_view([]), queued_mcpu={})
    assert route is not None and route.pool == "wide"
    assert route.reason.startswith("names no pool: sent to pool wide ($0.5/core-hour)")
    assert "small is too small (1 core and 4 GiB)" in route.reason
    assert "default is too small (no worker)" in route.reason


def test_no_pool_that_can_ever_run_the_job_means_no_route() -> None:
    cols = [collection("small", "ssh", cores=1)]
    huge = ReadyJob(1, 4, "u", 8000, 1 << 30, 0)
    local = active("local-1", "default", 2000)
    assert route_unnamed(huge, pools_of(cols), pool_view([local]), queued_mcpu={}) is None
    # The local workers' size as their provider recorded it counts before they register.
    assert route_unnamed(JOB, pools_of([]), pool_view([]), queued_mcpu={}) is None
    local_size = Resources(2000, 4 << 30)
    known = route_unnamed(JOB, pools_of([]), pool_view([]), queued_mcpu={}, local_size=local_size)
    assert known is not None and known.pool == "default"
