"""A benchmark session on the SLURM pool: the service and its client in separate pilot allocations on
different nodes of the test cluster; the service stopped when its client ends, nothing left in SLURM."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from tests.services.conftest import HOST_NETWORK, need
from tests.slurm.conftest import request_for
from tests.slurm.infra import slurm
from tests.slurm.test_slurm_provider import wait_status

from corral.client.backends import ServiceBackend
from corral.providers.slurm import SlurmProvider
from corral.sessions import runner
from corral.sessions.recipe import parse_recipe


@pytest.mark.parametrize("host_network", [False, True], ids=["private-network", "host-network"])
async def test_redis_session_on_the_slurm_pool_uses_two_nodes(
    corral_server: Any, slurm_provider: Any, slurm_conf: str, tmp_path: Path, host_network: bool,
) -> None:
    """By default the service's port is forwarded from its node into its private network, and the client
    (on another node, in its own private network) reaches it at the node's address; with the site's
    `host_network` opt-in both run on the nodes' own network."""
    need("redis-server", "redis-benchmark", "redis-cli")
    name = f"pool{uuid.uuid4().hex[:6]}"
    site = {"jobs": HOST_NETWORK} if host_network else {}
    server, slots = await corral_server(name, ["p1", "p2"], cores=1, memory="1Gi", **site)
    # This provider runs in the test, not the server: it forwards the site's [jobs] policy the same way
    # (from its settings; none given = the defaults, whatever this process's environment says).
    provider: SlurmProvider = await slurm_provider(
        name=name, driver_url=server.url, cores=1, memory="1Gi", sbatch_args=["--exclusive"],
        jobs=json.loads(HOST_NETWORK) if host_network else None,
    )
    for slot, pilot in zip(slots, ["p1", "p2"], strict=True):
        await provider.create_instance(request_for(provider, pilot, slot.token))
    for pilot in ("p1", "p2"):
        await wait_status(provider, pilot, "running")
    nodes = {
        line.split("|")[0].rsplit(".", 1)[-1]: line.split("|")[1]
        for line in slurm(slurm_conf, "squeue", "-h", "-o", "%j|%N").splitlines()
        if name in line
    }
    assert len(set(nodes.values())) == 2, nodes  # two allocations on two nodes
    recipe = parse_recipe(
        {
            "name": "slurm-redis",
            "service": {
                "type": "redis",
                "resources": {"cpu": 0.5, "memory": "256Mi"},
                "ready": {"deadline": 60},
            },
            "clients": [
                {
                    "type": "redis-benchmark",
                    "placement": "other",
                    "resources": {"cpu": 0.5, "memory": "256Mi"},
                    "stop": {"min_duration": 0.5, "min_requests": 1000},
                }
            ],
        }
    )
    backend = ServiceBackend(server.url, server.token)
    session = runner.submit(recipe, backend)
    client = backend.client()
    runner.wait(client, session, timeout=240)
    outcome = runner.finalize(client, session["id"], tmp_path / "report")
    assert outcome.state == "success", (
        outcome,
        [j.model_dump() for j in client.iter_jobs(session["batch_id"])],
    )
    where = {
        j.name: client.job_attempts(session["batch_id"], j.job_id)[-1].instance_name
        for j in client.iter_jobs(session["batch_id"])
    }
    service_at = next(v for k, v in where.items() if k and k.startswith("svc-"))
    client_at = next(v for k, v in where.items() if k and not k.startswith("svc-"))
    assert service_at != client_at and nodes[service_at] != nodes[client_at]
    service = next(
        client.get_job(session["batch_id"], j.job_id)
        for j in client.iter_jobs(session["batch_id"])
        if j.name and j.name.startswith("svc-")
    )
    assert (service.status or {})["service"]["network"] == ("host" if host_network else "nat")
    rows = runner.get_results(client, session["id"], metric="throughput")
    assert rows and rows[0]["value"] > 0
