"""SLURM output parsing, state meanings and the pilot's script and options (pure, no SLURM)."""

from __future__ import annotations

import shlex

import pytest

from corral.providers.base import InstanceRequest, MachineShape
from corral.providers.slurm.commands import SlurmCommandFailed, parse_sacct, parse_sbatch, parse_squeue
from corral.providers.slurm.options import SlurmOptions
from corral.providers.slurm.pilot import instance_of, job_name, pilot_script, sbatch_args
from corral.providers.slurm.states import classify


def test_sbatch_parsable_with_and_without_cluster() -> None:
    assert parse_sbatch("1234\n") == "1234"
    assert parse_sbatch("1234;lab\n") == "1234"
    with pytest.raises(SlurmCommandFailed, match="did not print a job id"):
        parse_sbatch("sbatch: error: something\n")


def test_squeue_lines_keep_names_with_separators() -> None:
    out = "12|RUNNING|None|n1|corral.pool.a\n13|PENDING|Resources||corral.pool.b|odd\n\n"
    jobs = parse_squeue(out)
    assert [(j.job_id, j.state, j.reason, j.nodes) for j in jobs] == [
        ("12", "RUNNING", "None", "n1"), ("13", "PENDING", "Resources", "")]
    assert jobs[1].name == "corral.pool.b|odd"


def test_sacct_keeps_the_last_record_and_skips_steps() -> None:
    out = ("7|NODE_FAIL|0:0|n3|2026-01-01T00:00:01|corral.p.x\n"
           "7.batch|CANCELLED|0:15|n3|2026-01-01T00:00:01|batch\n"
           "7|CANCELLED by 0|0:0|n3|2026-01-01T00:00:05|corral.p.x\n")
    found = parse_sacct(out)
    assert list(found) == ["7"] and found["7"].state == "CANCELLED" and found["7"].end.endswith("05")


@pytest.mark.parametrize(("state", "status", "reason"), [
    ("PENDING", "pending", None), ("CONFIGURING", "pending", None), ("RUNNING", "running", None),
    ("COMPLETING", "running", None), ("CANCELLED", "gone", "cancelled"),
    ("CANCELLED by 0", "gone", "cancelled"), ("TIMEOUT", "gone", "time limit"),
    ("NODE_FAIL", "gone", "node failure"), ("PREEMPTED", "gone", "preempted"),
    ("OUT_OF_MEMORY", "gone", "out of memory"), ("COMPLETED", "gone", "worker exited"),
    ("FAILED", "gone", "worker failed"), ("WEIRD", "gone", "slurm state weird"),
])
def test_states(state: str, status: str, reason: str | None) -> None:
    assert classify(state) == (status, reason)


def _request(**shape: object) -> InstanceRequest:
    spec = {"name": "pool", "cores": 2.5, "memory_bytes": 3 * 1024**3, **shape}
    return InstanceRequest("inst-1", "pool", MachineShape(**spec), "s3cr3t token", "http://127.0.0.1:1")


def test_sbatch_args_from_shape_and_options() -> None:
    options = SlurmOptions(partition="gpu", account="lab", qos="high", time_limit="1-00:00:00",
                           sbatch_args=["--constraint=avx2"])
    args = sbatch_args(options, _request(gpus=2, gpu_type="a100"), "/logs")
    assert "--cpus-per-task=3" in args and "--mem=3072M" in args
    assert {"--partition=gpu", "--account=lab", "--qos=high", "--time=1-00:00:00", "--gres=gpu:a100:2",
            "--no-requeue", "--export=NONE", "--constraint=avx2"} <= set(args)
    assert "--job-name=corral.pool.inst-1" in args and "--output=/logs/inst-1.%j.log" in args
    assert not any(a.startswith("--gres") for a in sbatch_args(SlurmOptions(), _request(), "/l"))
    assert "--gres=gpu:4" in sbatch_args(SlurmOptions(), _request(gpus=4), "/l")
    assert "--signal=B:INT@120" in sbatch_args(SlurmOptions(drain_before_end=120), _request(), "/l")
    assert not any(a.startswith("--signal") for a in args)


def test_pilot_script_runs_the_worker_with_its_settings() -> None:
    script = pilot_script(SlurmOptions(worker_python="/opt/py/bin/python"), _request(), "http://h:9/")
    lines = script.splitlines()
    assert lines[0] == "#!/bin/bash" and lines[-1] == "exec /opt/py/bin/python -m corral worker"
    exports = dict(shlex.split(line[len("export "):])[0].split("=", 1) for line in lines
                   if line.startswith("export "))
    assert exports["CORRAL_WORKER_TOKEN"] == "s3cr3t token"  # quoted, in the script, not a command line
    assert exports["CORRAL_URL"] == "http://h:9/" and exports["CORRAL_INSTANCE_NAME"] == "inst-1"
    assert exports["CORRAL_WORKER_CORES"] == "2.5" and exports["CORRAL_WORKER_MEMORY"] == str(3 * 1024**3)
    assert exports["CORRAL_WORKER_STOP_ON_TERM"] == "1"
    assert 'CORRAL_WORKER_WORK_DIR="${TMPDIR:-/tmp}/corral-pilot-${SLURM_JOB_ID' in script  # node-local
    chosen = pilot_script(SlurmOptions(worker_work_dir="/scratch/me"), _request(), "http://h:9/")
    assert "export CORRAL_WORKER_WORK_DIR=/scratch/me" in chosen and "TMPDIR" not in chosen


def test_job_names_tell_our_collection_apart() -> None:
    options = SlurmOptions()
    name = job_name(options, "pool", "inst-1")
    assert instance_of(options, "pool", name) == "inst-1"
    assert instance_of(options, "pool2", name) is None
    assert instance_of(options, "poo", name) is None
    assert instance_of(options, "pool", "wrap") is None
