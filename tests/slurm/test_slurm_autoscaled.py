"""End to end through the autoscaler: a server started with --config whose [[instance_collections]]
use provider = "slurm"."""

from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tests.acceptance.harness import RunningServer, job
from tests.slurm.conftest import server_env
from tests.slurm.infra import slurm, wait_for
from tests.slurm.test_slurm_pilots import attempts


def write_config(path: Path, slurm_conf: str, log_dir: Path) -> Path:
    options = (
        f'worker_python = "{sys.executable}"\nlog_dir = "{log_dir}"\ntime_limit = "30"\n'
        f'[instance_collections.provider_options.env]\nSLURM_CONF = "{slurm_conf}"\n'
    )
    path.write_text(
        '[[instance_collections]]\nname = "hpc"\nkind = "pool"\nprovider = "slurm"\n'
        'shape = { cores = 2, memory = "1Gi" }\nmin_instances = 0\nmax_instances = 3\n'
        'max_new_instances_per_loop = 3\nidle_seconds = 5\n'
        '[instance_collections.provider_options]\npartition = "debug"\n' + options
        + '\n[[instance_collections]]\nname = "hpcbig"\nkind = "job_private"\nprovider = "slurm"\n'
        'max_instances = 2\n[instance_collections.provider_options]\n' + options
    )
    return path


AUTOSCALER_INTERVAL = 1.0  # seconds between the autoscaler's ticks (driver/autoscaler.py)


@pytest.fixture
def squeue_log(tmp_path: Path) -> Path:
    """A `squeue` first on the server's PATH that notes the time of each call, then runs the real one."""
    shims = tmp_path / "shims"
    shims.mkdir()
    log = tmp_path / "squeue.calls"
    real = shutil.which("squeue") or "/usr/bin/squeue"
    shim = shims / "squeue"
    shim.write_text(f'#!/bin/sh\ndate +%s.%N >> "{log}"\nexec "{real}" "$@"\n')
    shim.chmod(0o755)
    return log


@pytest.fixture
def slurm_server(slurm_conf: str, tmp_path: Path, squeue_log: Path) -> Any:
    home = tmp_path / "home"
    home.mkdir()
    config = write_config(tmp_path / "corral.toml", slurm_conf, tmp_path / "pilots")
    env = server_env(home, "hpc", config=str(config), heartbeat_timeout=10)
    env["PATH"] = f"{squeue_log.parent / 'shims'}:{env.get('PATH', '')}"
    server = RunningServer(home, env)
    server.start()
    yield server
    server.stop()
    ours = [line.split("|")[0] for line in slurm(slurm_conf, "squeue", "-h", "-o", "%i|%j").splitlines()
            if "|corral.hpc" in line]
    if ours:
        slurm(slurm_conf, "scancel", *ours, check=False)


def pilots_of(slurm_conf: str, collection: str) -> dict[str, int]:
    """Running pilot jobs of a collection: job id -> allocated CPUs."""
    out = slurm(slurm_conf, "squeue", "-h", "-t", "running", "-o", "%i|%C|%j")
    return {i: int(c) for i, c, n in (line.split("|", 2) for line in out.splitlines())
            if n.startswith(f"corral.{collection}.")}


def test_slurm_pool_scales_up_and_runs_a_batch(slurm_server: RunningServer, slurm_conf: str) -> None:
    batch_id = slurm_server.submit([job(f"echo {i}", i) for i in range(1, 11)])
    status = slurm_server.wait(batch_id, timeout=180)
    assert status["state"] == "success", status
    names = {a["instance_name"] for i in range(1, 11) for a in attempts(slurm_server, batch_id, i)}
    assert names and all(name for name in names)
    # ... and back to no pilot once idle_seconds have passed
    wait_for("idle pilots to be released", lambda: not pilots_of(slurm_conf, "hpc"), timeout=120)


def test_the_driver_issues_at_most_one_squeue_per_tick(
    slurm_server: RunningServer, slurm_conf: str, squeue_log: Path
) -> None:
    """Two SLURM collections, several pilots and many jobs: still one squeue per autoscaler tick."""
    jobs = [job("sleep 0.5", i) for i in range(1, 25)] + [job("nproc", 25, cpu="6", memory="512Mi")]
    t0 = time.time()
    batch_id = slurm_server.submit(jobs)
    wait_for("several pilots", lambda: len(pilots_of(slurm_conf, "hpc")) >= 2, timeout=120)
    status = slurm_server.wait(batch_id, timeout=180)
    t1 = time.time()
    assert status["state"] == "success", status
    calls = [float(t) for t in squeue_log.read_text().split() if t0 <= float(t) <= t1]
    ticks = (t1 - t0) / AUTOSCALER_INTERVAL
    assert calls, "the autoscaler never listed the SLURM collections"
    assert len(calls) <= ticks + 2, f"{len(calls)} squeue calls in {t1 - t0:.1f}s ({ticks:.0f} ticks at most)"


def test_scancel_of_a_pilot_mid_job_is_retried_and_the_batch_succeeds(
    slurm_server: RunningServer, slurm_conf: str
) -> None:
    batch_id = slurm_server.submit([job("sleep 4; echo done", 1)])
    wait_for("the job to run", lambda: slurm_server.job(batch_id, 1)["state"] == "Running", timeout=180)
    running = pilots_of(slurm_conf, "hpc")
    assert running
    slurm(slurm_conf, "scancel", *running)
    status = slurm_server.wait(batch_id, timeout=180)
    assert status["state"] == "success", status
    tries = attempts(slurm_server, batch_id, 1)
    assert len(tries) >= 2 and tries[0]["reason"] == "lost" and tries[-1]["reason"] == "success"


def test_job_larger_than_any_pool_instance_gets_a_job_private_allocation(
    slurm_server: RunningServer, slurm_conf: str
) -> None:
    batch_id = slurm_server.submit([job("nproc; echo big", 1, cpu="6", memory="512Mi")])
    seen: dict[str, int] = {}

    def private_pilot() -> bool:
        seen.update(pilots_of(slurm_conf, "hpcbig"))
        return bool(seen) or slurm_server.batch(batch_id)["complete"]

    wait_for("a job-private allocation", private_pilot, timeout=180)
    status = slurm_server.wait(batch_id, timeout=180)
    assert status["state"] == "success", status
    assert seen, "the job ran without a job-private SLURM allocation"
    assert max(seen.values()) >= 6  # sized for the job, bigger than any pool pilot (2 cores)


def test_config_names_slurm_collections(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The TOML above is valid configuration, and each collection makes its SLURM provider."""
    from corral.config import Settings
    from corral.providers.slurm import make_provider

    config = write_config(tmp_path / "corral.toml", "/etc/slurm/slurm.conf", tmp_path)
    monkeypatch.setenv("CORRAL_CONFIG", str(config))
    settings = Settings()
    providers = [make_provider(c, settings) for c in settings.instance_collections]
    assert [p.options.env["SLURM_CONF"] for p in providers] == ["/etc/slurm/slurm.conf"] * 2
    assert [(c.name, c.kind, c.provider) for c in settings.instance_collections] == [
        ("hpc", "pool", "slurm"), ("hpcbig", "job_private", "slurm")]
