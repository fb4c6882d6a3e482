"""Shared by the sweep tests (local and SLURM): a server process, job commands, result checks."""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
from tests.acceptance.harness import RunningServer

import corral
from corral.sweeps import submit

PY = sys.executable

# y = a * b for every row, keeping _row so the sweep can join the parameters back
FIT = """
import sys, pyarrow.parquet as pq, pyarrow.compute as pc
t = pq.read_table(sys.argv[1])
pq.write_table(t.select(['_row']).append_column('y', pc.multiply(t['a'], t['b']).cast('double')), sys.argv[2])
"""


def py_command(code: str, *, before: str = "") -> str:
    """A sweep template running CODE with the chunk and result paths as argv[1], argv[2]."""
    quoted = shlex.quote(code).replace("{", "{{").replace("}", "}}")
    return f"{before}{shlex.quote(PY)} -c {quoted} {{chunk}} {{result}}"


def server_env(home: Path, **settings: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update({
        "CORRAL_HOME": str(home), "CORRAL_PORT": "0", "CORRAL_URL_FILE": str(home / "server.url"),
        "CORRAL_LOCAL_WORKERS": "1", "CORRAL_LOCAL_WORKER_CORES": "2", "CORRAL_LOCAL_WORKER_MEMORY": "4Gi",
        "CORRAL_HEARTBEAT_TIMEOUT": "10", "CORRAL_HEARTBEAT_INTERVAL": "0.5",
        # Results and chunk files live under pytest's temporary directories: the embedded default's user
        # works there (as they would in their own working directory), so those are their files.
        "CORRAL_FILES": json.dumps({"working_dir": str(home.parent.parent)}),
    })
    env.update({f"CORRAL_{k.upper()}": str(v) for k, v in settings.items()})
    return env


def start_server(home: Path, **settings: Any) -> RunningServer:
    home.mkdir(parents=True, exist_ok=True)
    server = RunningServer(home, server_env(home, **settings))
    server.start()
    return server


def backend_for(server: RunningServer) -> corral.ServiceBackend:
    return corral.ServiceBackend(server.url, server.token, home=server.home)


def check_grid_result(table: pa.Table, n_a: int, n_b: int, chunk_size: int) -> None:
    """Every (a, b) exactly once, y = a * b, chunk = row // chunk_size in grid order."""
    assert table.num_rows == n_a * n_b
    rows = table.to_pylist()
    seen = sorted((r["a"], r["b"]) for r in rows)
    assert seen == [(a, float(b)) for a in range(n_a) for b in range(n_b)]
    for r in rows:
        assert r["y"] == r["a"] * r["b"]
        assert r["chunk"] == (r["a"] * n_b + int(r["b"])) // chunk_size


def jobs_per_chunk(backend: corral.ServiceBackend, name: str) -> dict[str, list[str]]:
    """chunk key -> the states of every job the server ran for it, over all the sweep's batches."""
    client = backend.client()
    out: dict[str, list[str]] = {}
    for batch in submit.sweep_batches(client, name):
        for key, job in submit.iter_chunk_jobs(client, int(str(batch["id"]))):
            out.setdefault(key, []).append(job.state)
    return out


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")
