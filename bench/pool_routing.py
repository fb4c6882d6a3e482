"""The driver's cost of `pool_choice = "cheapest"` per job: routing N jobs that name no pool over P pools
and I instances, each routed job adding to its pool's queued cores as the driver's queues do.

    python -m bench.pool_routing [--jobs 10000] [--pools 4] [--instances 100]
"""

from __future__ import annotations

import argparse
import time

from corral.config import Settings
from corral.domain.scheduling import ReadyJob
from corral.driver.instances import InstanceState
from corral.driver.pool_routing import pool_view, routable_pools, route_unnamed
from corral.providers.config import InstanceCollectionConfig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--pools", type=int, default=4)
    parser.add_argument("--instances", type=int, default=100)
    args = parser.parse_args()
    cols = [
        InstanceCollectionConfig.model_validate({
            "name": f"p{i}", "provider": "ssh",
            "shape": {"cores": 4, "memory": "8Gi", "price_per_hour": 0.1 * (i + 1)},
        })
        for i in range(args.pools)
    ]
    settings = Settings(cost_per_core_hour=0.05, instance_collections=cols, local_workers=1)
    pools = routable_pools(settings)
    instances = []
    for i in range(args.instances):
        inst = InstanceState(f"i{i}", f"p{i % args.pools}", "h", 4000, 8 << 30)
        inst.active = True
        instances.append(inst)
    jobs = [ReadyJob(1, j, "u", 1000, 1 << 30, 0) for j in range(1, args.jobs + 1)]
    queued: dict[str, int] = {}
    started = time.perf_counter()
    view = pool_view(instances)
    for job in jobs:
        route = route_unnamed(job, pools, view, queued_mcpu=queued)
        assert route is not None
        queued[route.pool] = queued.get(route.pool, 0) + job.cores_mcpu
    elapsed = time.perf_counter() - started
    print(f"{args.jobs} jobs, {len(pools)} pools, {args.instances} instances: {args.jobs / elapsed:,.0f} "
          f"routings/s ({elapsed / args.jobs * 1e6:.1f} us/job); queued cores by pool: {queued}")


if __name__ == "__main__":
    main()
