"""The autoscaler asks each provider for its instances once per tick, however many jobs and instances run."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx
from tests.acceptance.harness import job
from tests.acceptance.sshbed import SshTestbed

from corral.config import Settings
from corral.driver.autoscaler import Autoscaler
from corral.driver.driver import Driver
from corral.providers.config import InstanceCollectionConfig
from corral.server import run_server


def _pool(name: str, host: dict[str, Any]) -> InstanceCollectionConfig:
    return InstanceCollectionConfig(
        name=name, provider="ssh", shape={"cores": 1, "memory": "256Mi"}, max_instances=3, idle_seconds=2,
        provider_options={"hosts": [host], "keepalive_interval": 1.0},
    )


async def test_each_tick_lists_each_providers_instances_exactly_once(
    tmp_path: Path, ssh_testbed: SshTestbed
) -> None:
    home = tmp_path / "home"
    settings = Settings(
        home=home, port=0, local_workers=0, pool="a", url_file=tmp_path / "url", heartbeat_timeout=10,
        instance_collections=[
            _pool("a", ssh_testbed.loopback_host("lb-a", cores=3, memory="2Gi")),
            _pool("b", ssh_testbed.loopback_host("lb-b", cores=3, memory="2Gi")),
        ],
    )
    live: dict[str, Any] = {}

    def started(driver: Driver, autoscaler: Autoscaler) -> None:
        live["autoscaler"] = autoscaler

    shutdown = asyncio.Event()
    server = asyncio.create_task(run_server(settings, started=started, shutdown=shutdown))
    try:
        while "autoscaler" not in live:
            assert not server.done(), server
            await asyncio.sleep(0.05)
        autoscaler: Autoscaler = live["autoscaler"]
        url = json.loads((tmp_path / "url").read_text())["url"]
        token = json.loads((home / "tokens.json").read_text())["token"]
        jobs = [job("sleep 0.5", i, cpu="1") for i in range(1, 11)]
        jobs += [job("sleep 0.5", i, cpu="1", pool="b") for i in range(11, 21)]
        samples = []
        most_placed = {name: 0 for name in autoscaler.providers}
        async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {token}"}) as c:
            spec = {"billing_project": "default", "token": "ticks", "n_jobs": len(jobs)}
            r = await c.post("/api/v1/batches/create-fast", json={"batch": spec, "bunch": jobs})
            assert r.status_code == 200, r.text
            batch_id = r.json()["id"]
            for _ in range(3000):
                # Read together (no await between): a tick in flight has listed but not yet counted itself.
                ticks = autoscaler.ticks
                calls = {n: p.list_calls for n, p in autoscaler.providers.items()}  # type: ignore[attr-defined]
                samples.append((ticks, calls))
                for name, p in autoscaler.providers.items():
                    most_placed[name] = max(most_placed[name], len(p.placed))  # type: ignore[attr-defined]
                for name, n_calls in calls.items():
                    assert ticks <= n_calls <= ticks + 1, (name, ticks, calls)
                status = (await c.get(f"/api/v1/batches/{batch_id}")).json()
                if status["complete"]:
                    break
                await asyncio.sleep(0.1)
        assert status["state"] == "success", status
        assert samples[-1][0] >= 3, samples[-1]  # many ticks, with several instances per provider live
        # Several instances per provider were live, and still one listing per tick.
        assert min(most_placed.values()) >= 2, most_placed
    finally:
        shutdown.set()
        await asyncio.wait_for(server, 60)
