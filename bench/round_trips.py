"""Worker <-> driver round trips per job, and the worker's CPU per job, for N `true` jobs:

    python -m bench.round_trips --jobs 200 [--runtime process|noop] [--cores 2]

A real `corral server` (no local worker) and one worker run in this process (the Agent), so every HTTP
request it makes is counted (an httpx request hook) by route: `events`, `poll`. Load-insensitive: the
counts do not depend on how busy the machine is; the CPU figure is this process's (the worker and the
status polling of this script, the same for any build), wall is noise under load.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import time
import uuid
from typing import Any

import httpx

from bench.corral_server import CorralServer, job_spec
from bench.workloads.common import CORRAL_JOB_CPU


async def _measure(server: CorralServer, n: int, runtime: str, cores: float) -> None:
    from corral.worker.agent import Agent

    admin = json.loads((server.home / "tokens.json").read_text())["admin_token"]
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
        r = await c.post("/api/v1/instances/tokens", headers={"Authorization": f"Bearer {admin}"},
                         json={"name": "round-trips", "cores": cores, "memory": "4Gi"})
        r.raise_for_status()
        token = r.json()["token"]
    agent = Agent(server.url, "round-trips", token, cores=cores, memory_bytes=4 << 30, runtime=runtime,
                  work_dir=server.home / "worker")
    calls: collections.Counter[str] = collections.Counter()

    call = agent.client._call  # the worker's client is aiohttp's: count at its one request method

    async def counted(method: str, path: str, **kwargs: Any) -> Any:
        calls["logs" if path.startswith("/logs/") else path.rsplit("/", 1)[-1]] += 1
        return await call(method, path, **kwargs)

    agent.client._call = counted  # type: ignore[method-assign]
    worker = asyncio.create_task(agent.run())
    headers = {"Authorization": f"Bearer {server.token}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=60) as c:

        async def batch(size: int) -> float:
            spec = {"billing_project": "default", "token": uuid.uuid4().hex, "n_jobs": size}
            jobs = [job_spec(i, ["true"], cpu=CORRAL_JOB_CPU) for i in range(1, size + 1)]
            t0 = time.perf_counter()
            r = await c.post("/api/v1/batches/create-fast", json={"batch": spec, "bunch": jobs})
            r.raise_for_status()
            batch_id = r.json()["id"]
            while not (await c.get(f"/api/v1/batches/{batch_id}")).json()["complete"]:
                await asyncio.sleep(0.05)
            return time.perf_counter() - t0

        await batch(20)  # warm-up: imports, first connections
        calls.clear()
        load, cpu0 = os.getloadavg()[0], time.process_time()
        wall = await batch(n)
        cpu = time.process_time() - cpu0
    agent.draining.set()
    await worker
    per_job = {route: round(k / n, 2) for route, k in sorted(calls.items())}
    print(f"runtime={runtime} jobs={n} cores={cores} load1={load:.1f}")
    print(f"  requests per job: {sum(calls.values()) / n:.2f} {per_job}")
    print(f"  worker (this process) CPU per job: {1000 * cpu / n:.2f} ms")
    print(f"  wall: {wall:.2f} s = {n / wall:.1f} jobs/s (noise under load)")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--runtime", default="process")
    parser.add_argument("--cores", type=float, default=2.0)
    args = parser.parse_args()
    settings = {"local_workers": "0"}
    if args.runtime == "host":  # the site's opt-in, for the driver (placing) and this process's worker
        settings["jobs"] = os.environ["CORRAL_JOBS"] = '{"allow_host_runtime": true}'
    with CorralServer("round-trips", settings) as server:
        asyncio.run(_measure(server, args.jobs, args.runtime, args.cores))


if __name__ == "__main__":
    main()
