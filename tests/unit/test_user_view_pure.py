"""Pure pieces of the user's view: DSL additions and typos, reasons in words, summaries, progress text."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from corral.client.dsl import Batch
from corral.client.handle import failure_summary, progress_text
from corral.domain.reasons import FailedParent, ended_reason, human_bytes
from corral.errors import InvalidInput

TMP = "file:///shared/tmp"


def test_gpus_gpu_type_pool_and_network_reach_the_wire_spec(tmp_path: Path) -> None:
    b = Batch()
    j = b.new_job("train").command("nvidia-smi").gpus(2).gpu_type("a100").pool("gpu").network("private")
    (spec,) = b.compile(tmpdir=TMP, cwd=tmp_path)
    assert (spec.resources.gpus, spec.resources.gpu_type) == (2, "a100")
    assert (spec.pool, spec.network) == ("gpu", "private")
    assert j.gpu_type("t4")._gpus == 2  # a type keeps the count already asked for


def test_a_gpu_type_alone_asks_for_one_gpu(tmp_path: Path) -> None:
    b = Batch()
    b.new_job().command("true").gpu_type("t4")
    (spec,) = b.compile(tmpdir=TMP, cwd=tmp_path)
    assert (spec.resources.gpus, spec.resources.gpu_type) == (1, "t4")


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda j: j.gpus(-1), "gpus"),
        (lambda j: j.gpus(1.5), "gpus"),
        (lambda j: j.gpu_type(" "), "gpu_type"),
        (lambda j: j.pool("no spaces"), "pool"),
        (lambda j: j.network("host"), "network"),
    ],
)
def test_bad_values_name_the_setting(call: object, field: str) -> None:
    job = Batch().new_job("x")
    with pytest.raises(InvalidInput) as caught:
        call(job)  # type: ignore[operator]
    assert caught.value.field == field


def test_an_attribute_typo_is_an_attribute_error_with_a_suggestion() -> None:
    job = Batch().new_job("x")
    with pytest.raises(AttributeError, match="did you mean 'timeout'"):
        job.timout(5)
    with pytest.raises(AttributeError, match="did you mean 'command'"):
        _ = job.comand
    # Output files still come from attributes, including method names with a number after them.
    assert job.ofile.name == "ofile" and job.env2.name == "env2" and job["timout"].name == "timout"


def test_calling_an_output_file_says_there_is_no_such_method() -> None:
    job = Batch().new_job("x")
    with pytest.raises(TypeError, match="has no method 'set_image'; did you mean 'image'"):
        job.set_image("ubuntu")
    with pytest.raises(AttributeError, match="did you mean 'cpu'"):
        job.cpus(2)


def test_the_client_modules_import_without_a_cycle() -> None:
    """Each of compile, job, submit, dsl imports on its own in a fresh interpreter (no cycle among them)."""
    for module in ("compile", "job", "submit", "dsl", "handle"):
        subprocess.run([sys.executable, "-c", f"import corral.client.{module}"], check=True)
    source = Path(__file__).resolve().parents[2] / "src" / "corral" / "client" / "job.py"
    assert "corral.client.dsl" not in source.read_text()


def test_reasons_in_words() -> None:
    assert ended_reason("Success", exit_code=0, status={}, memory_bytes=1) is None
    assert ended_reason("Running", exit_code=None, status=None, memory_bytes=1) is None
    assert ended_reason("Failed", exit_code=2, status={}, memory_bytes=1) == "the command exited with code 2"
    assert "killed by signal 9" in str(ended_reason("Failed", exit_code=137, status={}, memory_bytes=1))
    oom = ended_reason("Failed", exit_code=137, status={"out_of_memory": True}, memory_bytes=512 * 1024**2)
    assert oom == "out of memory: it used more than its 512 MiB memory limit (exit code 137)"
    timeout = ended_reason("Error", exit_code=None, status={"timed_out": True}, memory_bytes=1, timeout=2.5)
    assert timeout == "timed out after 2.5s (the job's timeout)"
    parent = FailedParent(7, "Error", "align")
    assert ended_reason("Cancelled", exit_code=None, status=None, memory_bytes=1, failed_parent=parent) == (
        "cancelled because its parent job 7 (align) ended in error"
    )
    assert ended_reason("Cancelled", exit_code=None, status=None, memory_bytes=1, batch_cancelled=True) == (
        "cancelled before it started: the batch was cancelled"
    )
    lost_status = {"error": "attempt lost: preempted\nmore"}
    lost = ended_reason("Error", exit_code=None, status=lost_status, memory_bytes=1)
    assert lost == "attempt lost: preempted"
    assert human_bytes(1536 * 1024**2) == "1.5 GiB" and human_bytes(100) == "100 B"


STATUS = {"id": 4, "state": "failure", "n_jobs": 30, "n_succeeded": 10, "n_failed": 15, "n_cancelled": 5,
          "n_completed": 30}


def test_failure_summary_names_jobs_reasons_and_the_log_command() -> None:
    failed = [{"job_id": i, "name": f"j{i}", "state": "Failed", "reason": f"exit {i}"} for i in range(1, 11)]
    text = failure_summary(STATUS, failed, 15)
    lines = text.splitlines()
    assert lines[0] == "batch 4 ended in failure: 10 of 30 jobs succeeded, 15 failed, 5 cancelled"
    assert lines[1] == "  job 1 (j1): Failed: exit 1"
    assert "… and 5 more: corral batch jobs 4 --state bad" in text
    assert lines[-1].startswith("logs: corral job log 4 1")


def test_progress_text_shows_running_queued_and_waiting() -> None:
    text = progress_text({**STATUS, "n_running": 4, "n_ready": 7, "waiting": 2})
    assert "4 running" in text and "7 queued" in text and "2 waiting for a machine" in text
    assert "running" not in progress_text(STATUS)
    assert "pool hpc failing: boom" in progress_text(STATUS, "pool hpc failing: boom")


def test_collection_health_backs_off_marks_failing_and_logs_each_failure_once(
    caplog: pytest.LogCaptureFixture,
) -> None:
    from corral.driver.collection_health import CollectionHealth

    health = CollectionHealth(base_delay=1.0, max_delay=8.0, failing_after=4)
    now = 1000.0
    waits = []
    for i in range(6):
        assert health.allows("hpc", now)
        health.failed("hpc", f"instance hpc-{i:08x} (job {100 + i}) ended before its worker called in", now)
        waits.append(health.of["hpc"].retry_at - now)
        assert not health.allows("hpc", now + waits[-1] - 0.01)
        now += waits[-1]
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert health.of["hpc"].state == "failing" and health.of["hpc"].attempts == 6
    warnings = [r.getMessage() for r in caplog.records if "cannot bring up" in r.getMessage()]
    assert len(warnings) == 1  # the same failure, whatever the instance and job ids
    health.failed("hpc", "sbatch: error: invalid partition specified", now)
    assert len([r for r in caplog.records if "cannot bring up" in r.getMessage()]) == 2
    health.recovered("hpc")
    assert health.of["hpc"].state == "ok" and health.allows("hpc", now)


def test_pilots_and_instances_say_which_pool_and_user_they_serve() -> None:
    from corral.driver.collection_health import instance_name
    from corral.providers.base import InstanceRequest, MachineShape
    from corral.providers.slurm.options import parse_options
    from corral.providers.slurm.pilot import instance_of, job_name, sbatch_args

    name = instance_name("gpu", "alice@lab")
    assert name.startswith("gpu-alice_lab-") and len(name) == len("gpu-alice_lab-") + 8
    assert instance_name("hpc").startswith("hpc-")
    options = parse_options("gpu", {})
    shape = MachineShape(name="gpu", cores=1, memory_bytes=1 << 30)
    request = InstanceRequest(name, "gpu", shape, "token", "http://x", serves="alice@lab")
    args = sbatch_args(options, request, "/logs")
    assert f"--comment=corral pool gpu for user alice@lab; instance {name}" in args
    assert instance_of(options, "gpu", job_name(options, "gpu", name)) == name
    pool_args = sbatch_args(options, InstanceRequest("hpc-1", "hpc", shape, "t", "http://x"), "/logs")
    assert "--comment=corral pool hpc for its users; instance hpc-1" in pool_args


def test_every_option_and_argument_of_every_command_has_help() -> None:
    import typer.main

    from corral.cli.main import app

    root = typer.main.get_command(app)
    missing: list[str] = []

    def walk(command: object, path: str) -> None:
        for param in getattr(command, "params", []):
            if not getattr(param, "help", None) and param.name not in ("help",):
                missing.append(f"{path} {param.name}")
        if not hasattr(command, "list_commands"):
            return
        for name in command.list_commands(None):  # the root's groups are built on first use
            sub = command.get_command(None, name)
            assert sub.help or sub.callback.__doc__, f"{path} {name} has no help"
            walk(sub, f"{path} {name}")

    walk(root, "corral")
    assert missing == []
