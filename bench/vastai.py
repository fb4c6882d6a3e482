"""Rented GPU hosts (the fake vast.ai with realistic delays): ready job -> first run on a newly rented host,
by phase; and autoscaler decisions per second over a market of 1,000 offers.

    .venv/bin/python -m bench.vastai [--scale 0.1] [--decisions 2000]

Delays are vast.ai's typical ones (search 0.8 s, create 1.5 s, scheduling 5 s, image pull 60 s, sshd 5 s)
times --scale (quick runs: 0.1). Starts the fake (real HTTP, sshd in network namespaces) and a real
`corral server` whose pool is rented from it at 0 instances. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.acceptance.harness import RunningServer, job
from tests.acceptance.sshbed import collections_toml
from tests.fakes.vastai.offers import market
from tests.fakes.vastai.process import FakeVastProcess

from corral.providers.base import MachineShape
from corral.providers.vastai.api import VastClient
from corral.providers.vastai.offers import BadHosts, rank_offers, search_query
from corral.providers.vastai.options import VastOptions

REAL = {"search": 0.8, "create": 1.5, "scheduling": 5.0, "loading": 60.0, "ssh": 5.0}
SHAPE = MachineShape("gpu", cores=1, memory_bytes=512 << 20, gpus=1, gpu_type=None)


def decisions(offers: list[dict[str, Any]], n: int) -> dict[str, float]:
    """Choices per second: the pure ranking over every offer, and search + rank through the fake's HTTP."""
    options = VastOptions(filters={"gpu_name": None, "reliability": 0.9, "verified": None})
    bad = BadHosts()
    for m in range(50_000, 50_040):
        bad.add(m, "failed", time.time(), 3600)
    per_machine = {m: 1 for m in range(50_040, 50_080)}
    started = time.perf_counter()
    for _ in range(n):
        rank_offers(offers, options, bad=bad, now=time.time(), ours_per_machine=per_machine, budget_left=50.0)
    pure = n / (time.perf_counter() - started)
    return {"rank_per_s": pure, "offers": len(offers)}


async def search_and_rank(url: str, key: str, n: int) -> float:
    client = VastClient(url, key, retries=8, retry_base=0.05)
    options = VastOptions(
        filters={"gpu_name": None, "reliability": None, "verified": None}, search_limit=1000
    )
    query = search_query(options, SHAPE)
    try:
        started = time.perf_counter()
        for _ in range(n):
            found = await client.search_offers(query)
            rank_offers(
                found, options, bad=BadHosts(), now=time.time(), ours_per_machine={}, budget_left=None
            )
        return n / (time.perf_counter() - started)
    finally:
        await client.close()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scale", type=float, default=0.1)
    parser.add_argument("--decisions", type=int, default=2000)
    args = parser.parse_args()
    offers = market(1000)
    figures: dict[str, Any] = {"scale": args.scale, "delays": {k: v * args.scale for k, v in REAL.items()}}
    figures["decisions"] = decisions(offers, args.decisions)
    with tempfile.TemporaryDirectory(prefix="corral-bench-vast-") as tmp:
        d = Path(tmp)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "id")], check=True)
        (d / "api_key").write_text("bench-key")
        fake = FakeVastProcess(
            d / "fake",
            offers,
            api_key="bench-key",
            delays={k: v * args.scale for k, v in REAL.items()},
            rate_scale=0.0,
        )
        fake.start()
        try:
            figures["search_rank_http_per_s"] = asyncio.run(search_and_rank(fake.url, "bench-key", 50))
            figures["first_run"] = first_run(d, fake)
        finally:
            fake.stop()
    print(json.dumps(figures, indent=2))


def first_run(d: Path, fake: FakeVastProcess) -> dict[str, Any]:
    col = {
        "name": "gpu",
        "kind": "pool",
        "provider": "vastai",
        "max_instances": 1,
        "idle_seconds": 30,
        "shape": {"cores": 1, "memory": "512Mi", "gpus": 1},
        "prepare": {"python": ">=3.9", "import_torch": True, "cuda": True, "min_free_disk": "1Gi"},
        "provider_options": {
            "url": fake.url,
            "api_key_file": str(d / "api_key"),
            "ssh_key": str(d / "id"),
            "work_dir": str(d / "work"),
            "poll_seconds": 0.5,
            "retry_base_seconds": 0.2,
            "filters": {"reliability": 0.9},
        },
    }
    (d / "corral.toml").write_text(collections_toml([col]))
    home = d / "home"
    home.mkdir()
    env = {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": str(Path.home()),
        "CORRAL_HOME": str(home),
        "CORRAL_PORT": "0",
        "CORRAL_URL_FILE": str(home / "server.url"),
        "CORRAL_LOCAL_WORKERS": "0",
        "CORRAL_POOL": "gpu",
        "CORRAL_CONFIG": str(d / "corral.toml"),
        "CORRAL_HEARTBEAT_INTERVAL": "0.5",
    }
    server = RunningServer(home, env)
    server.start()
    try:
        submitted = time.time()
        batch_id = server.submit([job("echo first", 1, cpu="1")])
        status = server.wait(batch_id, timeout=900)
        with sqlite3.connect(home / "corral.db") as db:
            started, instance = db.execute(
                "SELECT time_started, instance_name FROM attempts WHERE batch_id = ?", (batch_id,)
            ).fetchone()
            created, activated, meta = db.execute(
                "SELECT time_created, time_activated, metadata FROM instances WHERE name = ?", (instance,)
            ).fetchone()
        phases = json.loads(meta).get("phases", {})
        brought_up = created + sum(phases.values())
        return {
            "state": status["state"],
            "ready_to_first_run_s": round(started - submitted, 2),
            "phases_s": {
                **phases,
                "worker_up": round(activated - brought_up, 3),
                "first_assignment": round(started - activated, 3),
            },
        }
    finally:
        server.stop()


if __name__ == "__main__":
    main()
