"""Whole attempts (input, main, output, logs, events) on the real process and noop runtimes."""

from __future__ import annotations

import asyncio
import base64
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from corral.runtimes import Runtime, runtime_class
from corral.worker.attempt import INLINE_LOG_BYTES, run_attempt
from corral.worker.layout import ScratchLayout
from corral.worker.protocol import Assignment, StepName, parse_assignment

# In CI a missing sandbox is a failure (scripts/setup.sh installs bubblewrap), never a skip.
needs_sandbox = pytest.mark.skipif(
    os.environ.get("CI") != "true" and (os.geteuid() != 0 or shutil.which("bwrap") is None),
    reason="needs root and bubblewrap (bwrap)",
)


class Recorder:
    """Collects what an attempt sends to the driver: events and uploaded logs."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []
        self.logs: dict[StepName, bytes] = {}
        self.completed_before_logs = False

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    async def upload(self, assignment: Assignment, step: StepName, data: bytes) -> None:
        self.logs[step] = data


def assignment(command: str, **spec: Any) -> Assignment:
    job_id = uuid.uuid4().int % 10**6 + 1  # a fresh attempt directory per test
    return parse_assignment({
        "key": f"7.{job_id}.1", "batch_id": 7, "job_id": job_id, "attempt_id": 1,
        "spec": {"command": ["bash", "-c", command], "runtime": "process", **spec},
        "cores_mcpu": 1000, "memory_bytes": 256 * 1024 * 1024, "storage_bytes": 0,
    })


@pytest.fixture
async def process_runtime(tmp_path: Path) -> AsyncIterator[Runtime]:
    rt = runtime_class("process")(instance_name=f"test-{uuid.uuid4().hex[:8]}", work_dir=tmp_path)
    await rt.start()
    yield rt
    await rt.close()


async def attempt(runtime: Runtime, a: Assignment, tmp_path: Path, cancel: asyncio.Event | None = None
                  ) -> tuple[dict[str, Any], Recorder]:
    rec = Recorder()
    layout = ScratchLayout(tmp_path / "work")
    event = await run_attempt(
        a, runtime, layout.attempt(a.key), cancel or asyncio.Event(), emit=rec.emit, upload_log=rec.upload
    )
    for step, encoded in event.get("logs", {}).items():  # small logs ride in the event, big ones are uploaded
        assert step not in rec.logs, f"{step} log both inline and uploaded"
        rec.logs[step] = base64.b64decode(encoded)
    return event, rec


@needs_sandbox
async def test_small_logs_ride_in_the_event_and_big_ones_are_uploaded(
    process_runtime: Runtime, tmp_path: Path
) -> None:
    a = assignment(f"echo small; head -c {INLINE_LOG_BYTES + 1} /dev/zero | tr '\\0' x >&2")
    rec = Recorder()
    layout = ScratchLayout(tmp_path / "work")
    event = await run_attempt(a, process_runtime, layout.attempt(a.key), asyncio.Event(), emit=rec.emit,
                              upload_log=rec.upload)
    assert event["state"] == "succeeded", event
    assert "logs" not in event  # the main log is over the inline limit: uploaded, not carried
    assert rec.logs["main"].startswith(b"small\n") and len(rec.logs["main"]) == INLINE_LOG_BYTES + 7

    quiet = assignment("true")
    event = await run_attempt(quiet, process_runtime, layout.attempt(quiet.key), asyncio.Event(),
                              emit=rec.emit, upload_log=rec.upload)
    assert event["logs"] == {"main": ""}  # an empty log is still recorded: it hides no older attempt's log


@needs_sandbox
async def test_inputs_reach_the_job_and_outputs_leave_it(process_runtime: Runtime, tmp_path: Path) -> None:
    src = tmp_path / "in.txt"
    src.write_text("hello input\n")
    src_dir = tmp_path / "indir"
    (src_dir / "deep").mkdir(parents=True)
    (src_dir / "deep" / "f").write_text("nested")
    out_url = f"file://{tmp_path}/results/out.txt"
    a = assignment(
        "tr a-z A-Z < /io/in/data.txt > /io/out.txt; cat /io/tree/deep/f; echo main-ran",
        file_access="worker",  # the embedded default's own user: tmp_path is root's (0700)
        input_files=[
            {"from": f"file://{src}", "to": "/io/in/data.txt"}, {"from": str(src_dir), "to": "/io/tree"}
        ],
        output_files=[{"from": "/io/out.txt", "to": out_url}],
    )
    event, rec = await attempt(process_runtime, a, tmp_path)
    assert event["type"] == "completed" and event["key"] == a.key
    assert event["state"] == "succeeded", event
    assert (tmp_path / "results" / "out.txt").read_text() == "HELLO INPUT\n"
    statuses = event["container_statuses"]
    assert [statuses[s]["state"] for s in ("input", "main", "output")] == ["succeeded"] * 3
    assert statuses["main"]["exit_code"] == 0
    assert statuses["main"]["timing"]["duration_ms"] >= 0
    assert b"nested" in rec.logs["main"] and b"main-ran" in rec.logs["main"]
    assert b"copied" in rec.logs["input"] and b"copied" in rec.logs["output"]
    assert rec.events[0]["type"] == "started" and rec.events[0]["key"] == a.key
    assert event["resource_usage"]["cpu_seconds"] > 0


@needs_sandbox
async def test_local_copies_run_as_the_jobs_user(process_runtime: Runtime, tmp_path: Path) -> None:
    """Without the owner's access, a file:// copy has the job's rights: root's 0600 file stays unread."""
    secret = tmp_path / "root-only.txt"
    secret.write_text("root secret\n")
    secret.chmod(0o600)
    shared = Path(tempfile.mkdtemp(prefix="corral-shared-"))
    try:
        shared.chmod(0o777)
        (shared / "public.txt").write_text("public\n")
        (shared / "public.txt").chmod(0o644)
        a = assignment("cat /io/public.txt; cp /io/public.txt /io/back.txt", input_files=[
            {"from": f"file://{shared}/public.txt", "to": "/io/public.txt"}],
            output_files=[{"from": "/io/back.txt", "to": f"file://{shared}/out/back.txt"}])
        event, rec = await attempt(process_runtime, a, tmp_path)
        assert event["state"] == "succeeded", event
        back = shared / "out" / "back.txt"
        assert back.read_text() == "public\n"
        assert back.stat().st_uid != 0  # written by the job's uid, not the worker's
        denied = assignment("true", input_files=[{"from": f"file://{secret}", "to": "/io/s.txt"}])
        event, rec = await attempt(process_runtime, denied, tmp_path)
        assert event["state"] == "error" and "permission denied" in event["error"], event
        assert b"root secret" not in rec.logs.get("input", b"")
    finally:
        shutil.rmtree(shared, ignore_errors=True)


@needs_sandbox
async def test_an_output_linking_outside_io_is_refused(process_runtime: Runtime, tmp_path: Path) -> None:
    out = tmp_path / "leak.txt"
    a = assignment("ln -s /etc/shadow /io/out.txt", file_access="worker",
                   output_files=[{"from": "/io/out.txt", "to": f"file://{out}"}])
    event, _ = await attempt(process_runtime, a, tmp_path)
    assert event["state"] == "error" and "outside /io" in event["error"], event
    assert not out.exists()


@needs_sandbox
async def test_missing_input_is_an_error_naming_the_file(process_runtime: Runtime, tmp_path: Path) -> None:
    missing = f"file://{tmp_path}/nope.txt"
    a = assignment("echo should-not-run", input_files=[{"from": missing, "to": "/io/x"}],
                   file_access="worker")
    event, rec = await attempt(process_runtime, a, tmp_path)
    assert event["state"] == "error"
    assert missing in event["error"] and "no such file" in event["error"]
    assert event["container_statuses"]["input"]["state"] == "error"
    assert event["container_statuses"]["main"] is None
    assert missing.encode() in rec.logs["input"]
    assert "main" not in rec.logs


@needs_sandbox
async def test_missing_output_is_an_error_naming_the_file(
    process_runtime: Runtime, tmp_path: Path
) -> None:
    a = assignment("true", output_files=[{"from": "/io/never-written", "to": f"file://{tmp_path}/o"}],
                   file_access="worker")
    event, _ = await attempt(process_runtime, a, tmp_path)
    assert event["state"] == "error"
    assert "/io/never-written" in event["error"]
    assert event["container_statuses"]["main"]["state"] == "succeeded"
    assert event["container_statuses"]["output"]["state"] == "error"


@needs_sandbox
async def test_outputs_are_skipped_when_main_fails(process_runtime: Runtime, tmp_path: Path) -> None:
    outputs = [{"from": "/io/o", "to": str(tmp_path / "o")}]
    a = assignment("echo partial > /io/o; exit 3", output_files=outputs)
    event, _ = await attempt(process_runtime, a, tmp_path)
    assert event["state"] == "failed" and event["exit_code"] == 3
    assert event["container_statuses"]["output"]["state"] == "skipped"
    assert not (tmp_path / "o").exists()


@needs_sandbox
async def test_always_copy_output_copies_after_a_failure(process_runtime: Runtime, tmp_path: Path) -> None:
    a = assignment(
        "echo partial > /io/o; exit 3", output_files=[{"from": "/io/o", "to": str(tmp_path / "o")}],
        always_copy_output=True, file_access="worker",
    )
    event, _ = await attempt(process_runtime, a, tmp_path)
    assert event["state"] == "failed" and event["exit_code"] == 3
    assert event["container_statuses"]["output"]["state"] == "succeeded"
    assert (tmp_path / "o").read_text() == "partial\n"


@needs_sandbox
async def test_timeout_is_reported_as_timed_out_error(process_runtime: Runtime, tmp_path: Path) -> None:
    event, _ = await attempt(process_runtime, assignment("sleep 20", timeout=0.3), tmp_path)
    assert event["state"] == "error" and event["timed_out"] is True
    assert event["error"] == "timed out after 0.3s"


@needs_sandbox
async def test_cancel_during_main_reports_cancelled(process_runtime: Runtime, tmp_path: Path) -> None:
    cancel = asyncio.Event()
    task = asyncio.create_task(attempt(process_runtime, assignment("sleep 60"), tmp_path, cancel))
    await asyncio.sleep(0.3)
    cancel.set()
    event, _ = await asyncio.wait_for(task, 10)
    assert event["state"] == "cancelled"
    assert event["container_statuses"]["main"]["state"] == "cancelled"


@needs_sandbox
async def test_an_image_runs_in_the_sandbox_with_a_note(process_runtime: Runtime, tmp_path: Path) -> None:
    event, _ = await attempt(process_runtime, assignment("true", image="ubuntu:24.04"), tmp_path)
    assert event["state"] == "succeeded"
    assert "image ignored" in event["container_statuses"]["main"]["note"]


@needs_sandbox
async def test_out_of_memory_is_reported(process_runtime: Runtime, tmp_path: Path) -> None:
    a = parse_assignment({
        "key": "7.9.1", "batch_id": 7, "job_id": 9, "attempt_id": 1,
        "spec": {"command": ["bash", "-c", "head -c 200M /dev/zero | tail"]},
        "cores_mcpu": 1000, "memory_bytes": 64 * 1024 * 1024,
    })
    event, _ = await attempt(process_runtime, a, tmp_path)
    assert event["state"] == "failed" and event["out_of_memory"] is True
    assert event["container_statuses"]["main"]["out_of_memory"] is True


async def test_noop_runtime_succeeds_without_running_anything(tmp_path: Path) -> None:
    rt = runtime_class("noop")(instance_name="noop-test", work_dir=tmp_path)
    await rt.start()
    marker = tmp_path / "marker"
    event, rec = await attempt(rt, assignment(f"touch {marker}"), tmp_path)
    assert event["state"] == "succeeded" and event["exit_code"] == 0
    assert [e["type"] for e in rec.events] == ["started"]
    assert not marker.exists()
    assert event["container_statuses"]["main"]["state"] == "succeeded"


async def test_noop_runtime_honours_a_cancel(tmp_path: Path) -> None:
    rt = runtime_class("noop")(instance_name="noop-test", work_dir=tmp_path)
    cancel = asyncio.Event()
    cancel.set()
    event, _ = await attempt(rt, assignment("true"), tmp_path, cancel)
    assert event["state"] == "cancelled"
