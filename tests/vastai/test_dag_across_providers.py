"""One batch across every provider: local workers, an ssh pool, a SLURM pool and rented vast.ai hosts,
with resource files passed from each to the next through Corral's storage."""

from __future__ import annotations

import json
import os
import sqlite3
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.acceptance.harness import RunningServer
from tests.acceptance.sshbed import SshTestbed, collections_toml, start_testbed, stop_testbed
from tests.fakes.vastai.process import FakeVastProcess
from tests.slurm.infra import slurm, start_cluster
from tests.vastai.conftest import Blocks, collection_config

import corral

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def testbed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SshTestbed]:
    bed = start_testbed(
        tmp_path_factory.mktemp("dag-sshd"), tmp_path_factory.mktemp("dag-ssh-work"), n_hosts=1
    )
    yield bed
    stop_testbed(bed)


def test_one_batch_runs_on_local_ssh_slurm_and_rented_hosts_and_files_cross_them(
    tmp_path: Path,
    testbed: SshTestbed,
    fake_vast: FakeVastProcess,
    client_key: Path,
    vast_work_dir: Path,
    wheelhouse: Path,
) -> None:
    slurm_conf = start_cluster()
    (client_key.parent / "api_key").write_text(fake_vast.api_key + "\n")
    common = {"kind": "pool", "min_instances": 0, "max_instances": 1, "idle_seconds": 5}
    lab = {
        "name": "lab",
        "provider": "ssh",
        "shape": {"cores": 1, "memory": "512Mi"},
        **common,
        "provider_options": {
            "hosts": [testbed.loopback_host("dag1", cores=1, memory="1Gi")],
            "connect_timeout": 5.0,
            "health_interval": 0,
        },
    }
    hpc = {
        "name": "hpc",
        "provider": "slurm",
        "shape": {"cores": 1, "memory": "512Mi"},
        **common,
        "provider_options": {
            "partition": "debug",
            "worker_python": sys.executable,
            "time_limit": "30",
            "log_dir": str(tmp_path / "pilots"),
            "env": {"SLURM_CONF": slurm_conf},
        },
    }
    gpu = collection_config(
        fake_vast, client_key, vast_work_dir, Blocks.take(), worker_wheelhouse=str(wheelhouse)
    )
    gpu.update(common)
    config = tmp_path / "corral.toml"
    config.write_text(collections_toml([lab, hpc, gpu]))
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update(
        {
            "CORRAL_HOME": str(home),
            "CORRAL_PORT": "0",
            "CORRAL_URL_FILE": str(home / "server.url"),
            "CORRAL_LOCAL_WORKERS": "1",
            "CORRAL_LOCAL_WORKER_CORES": "1",
            "CORRAL_CONFIG": str(config),
            "CORRAL_HEARTBEAT_INTERVAL": "0.5",
            "CORRAL_HEARTBEAT_TIMEOUT": "30",
        }
    )
    server = RunningServer(home, env)
    server.start()
    storage = home / "buckets" / "corral-local" / "dag"  # file:// URLs must be under an allowed root
    try:
        backend = corral.ServiceBackend(server.url, server.token, remote_tmpdir=f"file://{storage}")
        b = corral.Batch(name="across", backend=backend)
        local = b.new_job("local").pool("default").cpu(0.5).memory("256Mi")
        local.command(f"echo local > {local.out}")
        ssh = b.new_job("ssh").pool("lab").cpu(0.5).memory("256Mi")
        ssh.command(f"cat {local.out} > {ssh.out}; echo ssh >> {ssh.out}")
        hpc_job = b.new_job("slurm").pool("hpc").cpu(0.5).memory("256Mi")
        hpc_job.command(f"cat {ssh.out} > {hpc_job.out}; echo slurm >> {hpc_job.out}")
        rented = b.new_job("rented").pool("gpu").cpu(0.5).memory("256Mi")
        rented.command(f"cat {hpc_job.out} > {rented.out}; echo vast >> {rented.out}")
        result = home / "buckets" / "corral-local" / "result.txt"
        b.write_output(rented.out, str(result))
        handle = b.run(progress=False, timeout=600)
        status = handle.status()
        assert status["state"] == "success", (status, server.log_tail(80))
        assert result.read_text().split() == ["local", "ssh", "slurm", "vast"]
        with sqlite3.connect(home / "corral.db") as db:
            ran = dict(
                db.execute(
                    "SELECT j.name, i.collection FROM attempts a JOIN jobs j ON j.batch_id = a.batch_id "
                    "AND j.job_id = a.job_id JOIN instances i ON i.name = a.instance_name "
                    "WHERE a.batch_id = ? AND a.end_reason = 'success'",
                    (handle.id,),
                ).fetchall()
            )
            metas = [
                json.loads(m) for (m,) in db.execute("SELECT metadata FROM instances WHERE collection='gpu'")
            ]
        assert ran == {"local": "default", "ssh": "lab", "slurm": "hpc", "rented": "gpu"}, ran
        assert any(m.get("vast_id") for m in metas)
        # local -> ssh -> slurm -> rented: each handed its file on through Corral's storage
        assert sorted(p.parent.name for p in storage.rglob("out")) == ["j1", "j2", "j3"]
    finally:
        server.stop()
        ours = [
            line.split("|")[0]
            for line in slurm(slurm_conf, "squeue", "-h", "-o", "%i|%j").splitlines()
            if "|corral.hpc" in line
        ]
        if ours:
            slurm(slurm_conf, "scancel", *ours, check=False)
    assert fake_vast.live("corral:gpu:") == []  # the server released what it rented
