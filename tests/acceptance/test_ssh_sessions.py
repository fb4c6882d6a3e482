"""A benchmark session on an SSH pool of two network-namespace hosts: the service on one host, its client
on the other (placement=other), reaching it at the host's own address, not the tunnel's loopback."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from tests.acceptance.sshbed import SshTestbed
from tests.acceptance.test_ssh_pools import pool, serve, store
from tests.services.conftest import HOST_NETWORK, need

from corral.client.backends import ServiceBackend
from corral.sessions import runner
from corral.sessions.recipe import parse_recipe


def test_redis_session_on_an_ssh_pool_across_two_hosts(
    start_server: Any, tmp_path: Path, ssh_testbed: SshTestbed
) -> None:
    need("redis-server", "redis-benchmark", "redis-cli")
    hosts = [
        # The client harness runs this test's Python; the hosts' workers run on it, the one a job sees.
        ssh_testbed.namespace_host("h1", cores=1, memory="1Gi", python=os.path.realpath(sys.executable)),
        ssh_testbed.namespace_host("h2", cores=1, memory="1Gi", python=os.path.realpath(sys.executable)),
    ]
    server = serve(
        start_server,
        tmp_path,
        [pool("nsb", hosts, max_instances=2, idle_seconds=60)],
        pool="nsb",
        jobs=HOST_NETWORK,
    )
    recipe = parse_recipe(
        {
            "name": "ssh-redis",
            "service": {
                "type": "redis",
                "resources": {"cpu": 1, "memory": "256Mi"},
                "ready": {"deadline": 120},
            },
            "clients": [
                {
                    "type": "redis-benchmark",
                    "placement": "other",
                    "resources": {"cpu": 1, "memory": "256Mi"},
                    "stop": {"min_duration": 0.5, "min_requests": 1000},
                }
            ],
        }
    )
    backend = ServiceBackend(server.url, server.token)
    session = runner.submit(recipe, backend)
    client = backend.client()
    runner.wait(client, session, timeout=400)
    outcome = runner.finalize(client, session["id"], tmp_path / "report")
    jobs = {j.job_id: j for j in client.iter_jobs(session["batch_id"])}
    assert outcome.state == "success", (outcome, [j.model_dump() for j in jobs.values()], server.log_tail())
    service = client.get_job(session["batch_id"], 1)
    assert service.status is not None and service.status["service"]["host"].startswith("198.51.100.")
    hosts_used = store(
        server,
        "SELECT a.job_id, i.metadata FROM attempts a JOIN instances i ON i.name = a.instance_name "
        "WHERE a.batch_id = ?",
        session["batch_id"],
    )
    where = {job_id: json.loads(meta)["host"] for job_id, meta in hosts_used}
    assert where[1] != where[2]  # service and client on different hosts
    rows = runner.get_results(client, session["id"], metric="throughput")
    assert rows and rows[0]["value"] > 0
