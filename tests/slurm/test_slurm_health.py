"""SLURM pools that cannot bring pilots up (a partition that does not exist, a worker_python that does not
exist) are recorded as failing, back off exponentially, and say why to the user whose jobs wait."""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tests.acceptance.harness import RunningServer, job
from tests.cli_support import corral_env, run_corral
from tests.slurm.conftest import server_env
from tests.slurm.infra import slurm


def _config(path: Path, slurm_conf: str, log_dir: Path, *, partition: str, python: str) -> Path:
    path.write_text(
        '[[instance_collections]]\nname = "sick"\nkind = "pool"\nprovider = "slurm"\n'
        'shape = { cores = 1, memory = "256Mi" }\nmax_instances = 2\nmax_new_instances_per_loop = 1\n'
        f'[instance_collections.provider_options]\npartition = "{partition}"\nworker_python = "{python}"\n'
        f'log_dir = "{log_dir}"\ntime_limit = "5"\n'
        f'[instance_collections.provider_options.env]\nSLURM_CONF = "{slurm_conf}"\n'
    )
    return path


@pytest.fixture
def sick_server(slurm_conf: str, tmp_path: Path, request: pytest.FixtureRequest) -> Any:
    partition, python = request.param
    home = tmp_path / "home"
    home.mkdir()
    config = _config(tmp_path / "corral.toml", slurm_conf, tmp_path / "pilots", partition=partition,
                     python=python)
    server = RunningServer(home, server_env(home, "sick", config=str(config), heartbeat_timeout=10))
    server.start()
    yield server
    server.stop()
    ours = [line.split("|")[0] for line in slurm(slurm_conf, "squeue", "-h", "-o", "%i|%j").splitlines()
            if "|corral.sick" in line]
    if ours:
        slurm(slurm_conf, "scancel", *ours, check=False)


def _tries(server: RunningServer) -> int:
    with sqlite3.connect(server.home / "corral.db", timeout=30) as db:
        return int(db.execute("SELECT count(*) FROM instances WHERE collection = 'sick'").fetchone()[0])


@pytest.mark.parametrize(
    ("sick_server", "expected"),
    [
        (("nosuchpartition", "python3"), "invalid partition"),
        (("debug", "/nonexistent/python3"), "before its worker called in"),
    ],
    indirect=["sick_server"],
    ids=["bad-partition", "bad-worker-python"],
)
def test_a_sick_slurm_pool_backs_off_and_is_marked_failing(sick_server: RunningServer, expected: str) -> None:
    server = sick_server
    batch_id = server.submit([job("true", 1)])
    env = corral_env(server.home)
    started = time.monotonic()
    deadline = started + 150
    pool: dict[str, Any] = {}
    while time.monotonic() < deadline:
        (pool,) = json.loads(run_corral(["pool", "list", "--json"], env=env, expect=0).stdout)
        if pool["health"] == "failing":
            break
        time.sleep(1)
    else:
        raise AssertionError(f"not failing: {pool}\n{server.log_tail()}")
    elapsed = time.monotonic() - started
    assert expected in (pool["last_error"] or "").lower() or expected in (pool["last_error"] or ""), pool
    tries = _tries(server)
    # Exponential backoff: at most ~log2(elapsed) tries, where a retry every tick would make ~elapsed.
    assert 4 <= tries <= 5 + int(elapsed).bit_length(), (tries, elapsed)
    jobs = run_corral(["batch", "jobs", str(batch_id)], env=env, expect=0).stdout
    assert "waits for pool sick, which cannot bring up instances" in jobs
    log = server.log.read_text(errors="replace")
    assert log.count("pool sick cannot bring up instances") <= 2, log[-4000:]


def test_pilots_say_in_squeue_which_pool_they_serve(slurm_conf: str, tmp_path: Path) -> None:
    """`squeue -o %k` shows a pilot's pool and whom it serves (the comment Corral gives it)."""
    home = tmp_path / "home"
    home.mkdir()
    config = _config(tmp_path / "corral.toml", slurm_conf, tmp_path / "pilots", partition="debug",
                     python=sys.executable)
    server = RunningServer(home, server_env(home, "sick", config=str(config), heartbeat_timeout=10))
    server.start()
    try:
        server.submit([job("sleep 30", 1)])
        deadline = time.monotonic() + 60
        listed = ""
        while time.monotonic() < deadline and "corral pool sick" not in listed:
            listed = slurm(slurm_conf, "squeue", "-h", "-o", "%j|%k")
            time.sleep(0.5)
        line = next(x for x in listed.splitlines() if "corral pool sick" in x)
        name, comment = line.split("|", 1)
        assert name.startswith("corral.sick.sick-")
        assert comment.startswith("corral pool sick for its users; instance sick-")
    finally:
        server.stop()
        ours = [x.split("|")[0] for x in slurm(slurm_conf, "squeue", "-h", "-o", "%i|%j").splitlines()
                if "|corral.sick" in x]
        if ours:
            slurm(slurm_conf, "scancel", *ours, check=False)
