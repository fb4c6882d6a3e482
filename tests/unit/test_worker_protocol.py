"""Reading assignments and writing step statuses as docs/worker-protocol.md says."""

from __future__ import annotations

import pytest

from corral.errors import InvalidInput
from corral.runtimes.base import MainRequest, job_environment, without_rc_files
from corral.runtimes.cgroups import cpu_quota_us, safe_name
from corral.worker.protocol import FileSpec, StepStatus, parse_assignment


def test_a_full_assignment_is_read() -> None:
    a = parse_assignment({
        "key": "12.3.1", "batch_id": 12, "job_id": 3, "attempt_id": 1,
        "spec": {
            "command": ["bash", "-c", "echo"], "image": "ubuntu:24.04", "runtime": "process",
            "env": {"K": "V"}, "timeout": 5, "input_files": [{"from": "gs://b/x", "to": "/io/x"}],
            "output_files": [{"from": "/io/y", "to": "file:///tmp/y"}], "always_copy_output": True,
            "network": "none",
        },
        "cores_mcpu": 250, "memory_bytes": 1024, "storage_bytes": 0,
    })
    assert (a.key, a.batch_id, a.job_id, a.attempt_id) == ("12.3.1", 12, 3, 1)
    assert a.spec.timeout == 5.0 and a.spec.env == {"K": "V"} and a.spec.image == "ubuntu:24.04"
    assert a.spec.input_files == [FileSpec("gs://b/x", "/io/x")]
    assert a.spec.output_files == [FileSpec("/io/y", "file:///tmp/y")]
    assert a.spec.always_copy_output and a.spec.network == "none"
    assert a.cores_mcpu == 250 and a.memory_bytes == 1024


@pytest.mark.parametrize(
    "raw",
    [
        {"batch_id": 1, "job_id": 1, "attempt_id": 1, "spec": {"command": ["true"]}},
        {"key": "1.1.1", "batch_id": 1, "job_id": 1, "attempt_id": 1, "spec": {"command": []}},
        {"key": "1.1.1", "batch_id": 1, "job_id": 1, "attempt_id": 1,
         "spec": {"command": ["true"], "input_files": [{"from": "x"}]}},
        {"key": "1.1.1", "batch_id": "x", "job_id": 1, "attempt_id": 1, "spec": {"command": ["true"]}},
    ],
)
def test_a_malformed_assignment_is_invalid_input(raw: dict[str, object]) -> None:
    with pytest.raises(InvalidInput):
        parse_assignment(raw)


def test_step_status_wire_shape() -> None:
    wire = StepStatus("main", "failed", 10.0, 10.25, exit_code=2, error=None).to_wire()
    assert wire == {
        "name": "main", "state": "failed", "exit_code": 2,
        "timing": {"start": 10.0, "end": 10.25, "duration_ms": 250},
        "error": None, "out_of_memory": False,
    }
    assert StepStatus("main", "succeeded", 1, 1, note="image ignored").to_wire()["note"] == "image ignored"


def test_bash_commands_run_without_rc_files() -> None:
    assert without_rc_files(["bash", "-c", "x"]) == ["bash", "--noprofile", "--norc", "-c", "x"]
    assert without_rc_files(["/bin/bash", "-c", "x"])[:3] == ["/bin/bash", "--noprofile", "--norc"]
    assert without_rc_files(["python3", "-c", "x"]) == ["python3", "-c", "x"]


def test_job_environment_is_clean_and_the_jobs_env_wins(tmp_path: object) -> None:
    from pathlib import Path

    p = Path("/x")
    req = MainRequest(key="k", command=["true"], io_dir=p, scratch=p, tmp_dir=p, log_path=p,
                      env={"PATH": "/opt/bin", "A": "1"})
    env = job_environment(req)
    assert env["PATH"] == "/opt/bin" and env["A"] == "1" and env["HOME"] == "/tmp"
    assert not any(k.startswith("CORRAL_") for k in env)


def test_cpu_quota_follows_the_cores() -> None:
    assert cpu_quota_us(1000) == 100_000
    assert cpu_quota_us(250) == 25_000
    assert cpu_quota_us(2500) == 250_000
    assert cpu_quota_us(1) == 1_000  # the kernel's minimum


def test_cgroup_names_are_safe() -> None:
    assert safe_name("12.3.1") == "12.3.1"
    assert safe_name("../x y") == ".._x_y"
