"""Pilots run the real worker under SLURM and serve a real `corral server`: the worker registers, runs a
batch, and a pilot cancelled mid-job gives its job back to be retried on another pilot."""

from __future__ import annotations

import uuid
from typing import Any

from tests.acceptance.harness import RunningServer, job
from tests.slurm.conftest import request_for
from tests.slurm.infra import slurm, wait_for
from tests.slurm.test_slurm_provider import wait_status

from corral.providers.slurm import SlurmProvider


def attempts(server: RunningServer, batch_id: int, job_id: int) -> list[dict[str, Any]]:
    with server.client() as c:
        r = c.get(f"/api/v1/batches/{batch_id}/jobs/{job_id}/attempts")
        assert r.status_code == 200, r.text
        return list(r.json())


async def test_pilot_registers_with_the_server_and_runs_a_batch(
    corral_server: Any, slurm_provider: Any
) -> None:
    name = f"pool{uuid.uuid4().hex[:6]}"
    server, slots = await corral_server(name, ["p1"], cores=2, memory="1Gi")
    provider: SlurmProvider = await slurm_provider(name=name, driver_url=server.url, cores=2, memory="1Gi")
    await provider.create_instance(request_for(provider, "p1", slots[0].token))
    await wait_status(provider, "p1", "running")
    batch_id = server.submit([job(f"echo job {i} on $(hostname)", i) for i in range(1, 7)])
    status = server.wait(batch_id, timeout=120)
    assert status["state"] == "success" and status["n_succeeded"] == 6, status
    assert {a["instance_name"] for i in range(1, 7) for a in attempts(server, batch_id, i)} == {"p1"}


async def test_scancel_of_a_pilot_mid_job_retries_the_job_on_another_pilot(
    corral_server: Any, slurm_provider: Any, slurm_conf: str
) -> None:
    name = f"pool{uuid.uuid4().hex[:6]}"
    server, slots = await corral_server(name, ["p1", "p2"], cores=1, memory="512Mi")
    provider: SlurmProvider = await slurm_provider(name=name, driver_url=server.url, cores=1, memory="512Mi")
    first = await provider.create_instance(request_for(provider, "p1", slots[0].token))
    await wait_status(provider, "p1", "running")
    batch_id = server.submit([job("sleep 3; echo finished", 1)])
    wait_for("the job to run on p1", lambda: server.job(batch_id, 1)["state"] == "Running", timeout=60)
    slurm(slurm_conf, "scancel", str(first["job_id"]))  # the pilot dies mid-job
    gone = await wait_status(provider, "p1", "gone")
    assert gone.reason == "cancelled"
    # What the autoscaler does for a lost instance: bring up another one.
    await provider.create_instance(request_for(provider, "p2", slots[1].token))
    status = server.wait(batch_id, timeout=120)
    assert status["state"] == "success", status
    tries = attempts(server, batch_id, 1)
    assert [a["instance_name"] for a in tries] == ["p1", "p2"]
    assert tries[0]["reason"] == "lost" and tries[1]["reason"] == "success"
