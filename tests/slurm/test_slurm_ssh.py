"""The same provider through a login node over SSH (a private sshd on loopback): the command layer runs
sbatch / squeue / scancel / sacct -c remotely, and pilots reach the driver through a reverse tunnel."""

from __future__ import annotations

import asyncio
import sys
import uuid
from typing import Any

from tests.slurm.conftest import request_for
from tests.slurm.infra import Sshd, wait_async
from tests.slurm.test_slurm_pilots import attempts
from tests.slurm.test_slurm_provider import wait_status

from corral.providers.slurm import SlurmProvider
from corral.providers.slurm.commands import SlurmCommands
from corral.providers.slurm.options import SshLogin
from corral.providers.slurm.runners import SlurmUnavailable, SshRunner


async def test_command_layer_over_ssh(sshd: Sshd, slurm_conf: str) -> None:
    runner = SshRunner(SshLogin(**sshd.login()), {"SLURM_CONF": slurm_conf})
    commands = SlurmCommands(runner)
    try:
        name = f"corral.ssh-{uuid.uuid4().hex[:6]}.x"
        job_id = await commands.submit("#!/bin/bash\nsleep 30\n", [f"--job-name={name}", "--output=/dev/null",
                                                                    "--mem=64M"])
        queued = {j.job_id: j for j in await commands.queue()}
        assert queued[job_id].name == name and queued[job_id].state in {"PENDING", "RUNNING"}
        await commands.cancel([job_id])
        await commands.cancel([job_id])  # already over: not an error

        async def recorded() -> bool:
            return job_id in await commands.finished([job_id])

        await wait_async("the completion log to record the job", recorded, timeout=30)
        record = (await commands.finished([job_id]))[job_id]
        assert record.state == "CANCELLED" and record.name == name
    finally:
        await runner.close()


async def test_unreachable_login_node_is_a_clear_error(sshd: Sshd) -> None:
    from tests.slurm.infra import free_port

    runner = SshRunner(SshLogin(**{**sshd.login(), "port": free_port(), "connect_timeout": 5}), {})
    try:
        await runner.run(["squeue"])
        raise AssertionError("expected SlurmUnavailable")
    except SlurmUnavailable as exc:
        assert "cannot reach the SLURM login node ssh://root@127.0.0.1" in exc.message


async def test_a_host_key_we_do_not_trust_is_refused(sshd: Sshd, tmp_path: Any) -> None:
    other = tmp_path / "known_hosts"
    other.write_text(f"[127.0.0.1]:{sshd.port} ssh-ed25519 "
                     "AAAAC3NzaC1lZDI1NTE5AAAAIBcm2Hy3n7TUM8rnoS4T1zpPfeJfQCkyB5sU1wSKo7xS\n")
    runner = SshRunner(SshLogin(**{**sshd.login(), "known_hosts": str(other)}), {})
    try:
        await runner.run(["true"])
        raise AssertionError("expected SlurmUnavailable")
    except SlurmUnavailable as exc:
        assert "cannot reach" in exc.message
    finally:
        await runner.close()


async def test_pilot_over_ssh_reaches_the_driver_through_the_tunnel(
    sshd: Sshd, corral_server: Any, slurm_provider: Any
) -> None:
    name = f"ssh{uuid.uuid4().hex[:6]}"
    server, slots = await corral_server(name, ["p1"], cores=1, memory="512Mi")
    provider: SlurmProvider = await slurm_provider(name=name, driver_url=server.url, cores=1, memory="512Mi",
                                                   ssh=sshd.login(),
                                                   worker_python=sys.executable)  # the login node is us
    meta = await provider.create_instance(request_for(provider, "p1", slots[0].token))
    assert meta["where"] == f"ssh://root@127.0.0.1:{sshd.port}"
    assert meta["worker_url"] != server.url  # the worker calls the tunnel's port on the login node
    await wait_status(provider, "p1", "running")
    batch_id = server.submit([{**_job(1), "job_id": 1}, {**_job(2), "job_id": 2}])
    # Waited in a thread: the tunnel lives in this event loop (as it lives in the driver's).
    status = await asyncio.to_thread(server.wait, batch_id, 120)
    assert status["state"] == "success", status
    assert {a["instance_name"] for a in attempts(server, batch_id, 1)} == {"p1"}

    # The SSH connection drops: the next call reconnects and opens the tunnel on the same port again,
    # so the worker already running finds the driver again.
    runner = provider.link.runner
    assert isinstance(runner, SshRunner) and runner._conn is not None
    runner._conn.close()
    await runner._conn.wait_closed()
    assert (await provider.list_instances())[0].status == "running"
    again = server.submit([{**_job(1), "job_id": 1}])
    assert (await asyncio.to_thread(server.wait, again, 120))["state"] == "success"


def _job(i: int) -> dict[str, Any]:
    from tests.acceptance.harness import job

    return job(f"echo over ssh {i}", i)
