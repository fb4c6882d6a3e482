"""A sweep on the SLURM pool: 10,000 rows in 100 chunks, each chunk a job on a pilot worker that the
autoscaler started with `sbatch` on the 4-node cluster; every row merged exactly once."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.acceptance.harness import RunningServer
from tests.acceptance.sweep_helpers import FIT, check_grid_result, jobs_per_chunk, py_command
from tests.slurm.conftest import server_env
from tests.slurm.infra import slurm
from tests.slurm.test_slurm_autoscaled import write_config

import corral


@pytest.fixture
def slurm_pool_server(slurm_conf: str, tmp_path: Path) -> Iterator[RunningServer]:
    home = tmp_path / "home"
    home.mkdir()
    config = write_config(tmp_path / "corral.toml", slurm_conf, tmp_path / "pilots")
    # The results live under tmp_path: the embedded default's user works there, so they are their files.
    server = RunningServer(home, server_env(home, "hpc", config=str(config), heartbeat_timeout=10,
                                            files=json.dumps({"working_dir": str(tmp_path)})))
    server.start()
    yield server
    server.stop()
    ours = [line.split("|")[0] for line in slurm(slurm_conf, "squeue", "-h", "-o", "%i|%j").splitlines()
            if "|corral.hpc" in line]
    if ours:
        slurm(slurm_conf, "scancel", *ours, check=False)


def test_a_10000_row_grid_runs_on_the_slurm_pool(slurm_pool_server: RunningServer, tmp_path: Path) -> None:
    grid = {"a": list(range(100)), "b": [float(b) for b in range(100)]}
    with corral.ServiceBackend(slurm_pool_server.url, slurm_pool_server.token,
                               home=slurm_pool_server.home) as backend:
        s = corral.Sweep("slurm-grid", grid, py_command(FIT), chunk_size=100, cpu=0.5, memory="256Mi",
                         pool="hpc", backend=backend, schema={"y": "float64"},
                         results_url=str(tmp_path / "store"))
        status = s.run(progress=False, timeout=900)
        assert status.complete, (status.failures, slurm_pool_server.log_tail())
        check_grid_result(s.results(), 100, 100, 100)
        runs = jobs_per_chunk(backend, "slurm-grid")
        assert len(runs) == 100 and all(states == ["Success"] for states in runs.values())
        # on the pool's SLURM pilots (not job-private allocations; the server has no local workers)
        client = backend.client()
        batch_id = status.batches[0]
        names = {a.instance_name for j in (1, 50, 100) for a in client.job_attempts(batch_id, j)}
        assert names and all(n.startswith("hpc-") for n in names), names
