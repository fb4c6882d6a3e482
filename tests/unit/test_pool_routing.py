"""The autoscaler's description of pools for the cheapest-pool rule (driver/pool_routing.py)."""

from __future__ import annotations

from corral.config import Settings
from corral.domain.scheduling import ReadyJob
from corral.driver.collections import collection_limits
from corral.driver.instances import InstanceState
from corral.driver.pool_routing import cheapest_pool
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
