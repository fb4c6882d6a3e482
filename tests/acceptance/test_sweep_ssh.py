"""A sweep on an SSH pool: chunks run on workers the driver started over SSH (real sshd on loopback)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pytest
from tests.acceptance.sshbed import SshTestbed
from tests.acceptance.sweep_helpers import FIT, backend_for, check_grid_result, jobs_per_chunk, py_command
from tests.acceptance.test_ssh_pools import pool, serve

import corral

pytestmark = pytest.mark.slow


def test_a_grid_sweep_runs_on_an_ssh_pool(start_server: Any, tmp_path: Path, ssh_testbed: SshTestbed) -> None:
    # The chunks run this test's interpreter (it has pyarrow): the host's worker runs on the same Python,
    # the one a job sees besides the host's own directories (docs/jobs.md).
    hosts = [ssh_testbed.loopback_host("sw1", cores=2, memory="2Gi", python=os.path.realpath(sys.executable))]
    # The results live under tmp_path: the embedded default's user works there, so they are their files.
    server = serve(start_server, tmp_path, [pool("lab", hosts, cores=2, shape={"memory": "2Gi"})], pool="lab",
                   files=json.dumps({"working_dir": str(tmp_path)}))
    with backend_for(server) as backend:
        grid = {"a": list(range(20)), "b": [float(b) for b in range(10)]}
        s = corral.Sweep("ssh-grid", grid, py_command(FIT), chunk_size=20, cpu=0.5, memory="512Mi",
                         pool="lab", backend=backend, schema={"y": "float64"},
                         results_url=str(tmp_path / "store"))
        status = s.run(progress=False, timeout=300)
        assert status.complete, (status.failures, server.log_tail(40))
        check_grid_result(s.results(), 20, 10, 20)
        runs = jobs_per_chunk(backend, "ssh-grid")
        assert len(runs) == 10 and all(states == ["Success"] for states in runs.values())
        client = backend.client()
        names = {a.instance_name for j in range(1, 11) for a in client.job_attempts(status.batches[0], j)}
        assert names and all(n.startswith("lab") for n in names), names
