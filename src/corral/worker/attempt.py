"""One attempt from assignment to its `completed` event: input, main, output, logs uploaded first."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from corral.runtimes.base import MainRequest, MainResult, Runtime, now
from corral.worker.layout import AttemptDirs
from corral.worker.protocol import STEPS, Assignment, StepName, StepStatus, started_event
from corral.worker.steps import copy_step

log = logging.getLogger(__name__)

MAX_LOG_BYTES = 32 * 1024 * 1024  # the driver's body limit is 64 MiB; keep the end, where errors are
INLINE_LOG_BYTES = 64 * 1024  # smaller logs ride in the `completed` event: no request of their own
LIVE_LOG_INTERVAL = 2.0  # seconds between uploads of a running job's main log (`corral job log --follow`)
LIVE_LOG_BYTES = 1024 * 1024  # the end of a running job's log is enough to follow it

EmitEvent = Callable[[dict[str, Any]], None]
UploadLog = Callable[[Assignment, StepName, bytes], Awaitable[None]]


def main_request(assignment: Assignment, dirs: AttemptDirs) -> MainRequest:
    spec = assignment.spec
    return MainRequest(
        key=assignment.key,
        command=spec.command,
        io_dir=dirs.io,
        scratch=dirs.root,
        tmp_dir=dirs.tmp,
        log_path=dirs.log("main"),
        env=spec.env,
        image=spec.image,
        network=spec.network,
        cores_mcpu=assignment.cores_mcpu,
        memory_bytes=assignment.memory_bytes,
        storage_bytes=assignment.storage_bytes,
        timeout=spec.timeout,
        devices=assignment.devices,
    )


def main_status(result: MainResult) -> StepStatus:
    return StepStatus(
        "main",
        result.state,
        result.start,
        result.end,
        exit_code=result.exit_code,
        error=result.error,
        out_of_memory=result.out_of_memory,
        note=result.note,
    )


async def run_attempt(
    assignment: Assignment,
    runtime: Runtime,
    dirs: AttemptDirs,
    cancel: asyncio.Event,
    *,
    emit: EmitEvent,
    upload_log: UploadLog,
) -> dict[str, Any]:
    """Run the steps and upload their logs; returns the `completed` event (not yet emitted)."""
    spec = assignment.spec
    emit(started_event(assignment.key, now()))
    statuses: dict[StepName, StepStatus | None] = dict.fromkeys(STEPS)
    event: dict[str, Any] = {
        "type": "completed",
        "key": assignment.key,
        "state": "succeeded",
        "exit_code": None,
        "error": None,
        "out_of_memory": False,
        "timed_out": False,
        "resource_usage": {"max_memory_bytes": 0, "cpu_seconds": 0.0},
    }

    def fail(step: StepStatus) -> None:
        event["state"] = "cancelled" if step.state == "cancelled" else "error"
        event["error"] = step.error

    if not runtime.uses_scratch:
        return await _run_without_scratch(assignment, runtime, cancel, event, statuses, dirs)
    try:
        await asyncio.to_thread(dirs.create)
        await runtime.prepare_io(dirs.io, assignment.storage_bytes)
    except OSError as exc:
        event["state"], event["error"] = "error", f"could not create the job's scratch directory: {exc}"
        return _finish(event, statuses)

    if spec.input_files:
        copied = await copy_step("input", spec.input_files, dirs.io, dirs.log("input"), cancel)
        statuses["input"] = copied
        if copied.state != "succeeded":
            fail(copied)
            return await _finish_with_logs(event, statuses, assignment, dirs, upload_log)

    if cancel.is_set():
        event["state"] = "cancelled"
        return await _finish_with_logs(event, statuses, assignment, dirs, upload_log)

    live = asyncio.create_task(stream_log(assignment, dirs.log("main"), upload_log), name="live-log")
    try:
        result = await runtime.run(main_request(assignment, dirs), cancel)
    except Exception as exc:  # a runtime bug must not lose the attempt: report it as an error
        log.exception("runtime %s failed on %s", runtime.name, assignment.key)
        t = now()
        result = MainResult("error", t, t, error=f"runtime {runtime.name} failed: {exc!r}")
    finally:
        live.cancel()
        await asyncio.gather(live, return_exceptions=True)
    statuses["main"] = main_status(result)
    event.update(
        state=result.state,
        exit_code=result.exit_code,
        error=result.error,
        out_of_memory=result.out_of_memory,
        timed_out=result.timed_out,
        resource_usage={"max_memory_bytes": result.max_memory_bytes, "cpu_seconds": result.cpu_seconds},
    )

    if spec.output_files:
        copy_anyway = spec.always_copy_output and result.state in ("failed", "error")
        if result.state == "succeeded" or copy_anyway:
            copied = await copy_step("output", spec.output_files, dirs.io, dirs.log("output"), cancel)
            statuses["output"] = copied
            if copied.state != "succeeded" and event["state"] == "succeeded":
                fail(copied)
        else:
            t = now()
            statuses["output"] = StepStatus("output", "skipped", t, t)
    return await _finish_with_logs(event, statuses, assignment, dirs, upload_log)


async def _run_without_scratch(
    assignment: Assignment,
    runtime: Runtime,
    cancel: asyncio.Event,
    event: dict[str, Any],
    statuses: dict[StepName, StepStatus | None],
    dirs: AttemptDirs,
) -> dict[str, Any]:
    result = await runtime.run(main_request(assignment, dirs), cancel)
    statuses["main"] = main_status(result)
    event.update(state=result.state, exit_code=result.exit_code, error=result.error)
    t = result.start
    if assignment.spec.input_files:
        statuses["input"] = StepStatus("input", "skipped", t, t)
    if assignment.spec.output_files:
        statuses["output"] = StepStatus("output", "skipped", t, t)
    return _finish(event, statuses)


async def _finish_with_logs(
    event: dict[str, Any],
    statuses: dict[StepName, StepStatus | None],
    assignment: Assignment,
    dirs: AttemptDirs,
    upload_log: UploadLog,
) -> dict[str, Any]:
    ran = [s.name for s in statuses.values() if s is not None and s.state != "skipped"]
    contents = await asyncio.to_thread(lambda: [read_log(dirs.log(step)) for step in ran])
    logs = dict(zip(ran, contents, strict=True))
    inline = {step: data for step, data in logs.items() if len(data) <= INLINE_LOG_BYTES}
    await asyncio.gather(*(upload_log(assignment, s, data) for s, data in logs.items() if s not in inline))
    if inline:
        event["logs"] = {step: base64.b64encode(data).decode("ascii") for step, data in inline.items()}
    return _finish(event, statuses)


def _finish(event: dict[str, Any], statuses: dict[StepName, StepStatus | None]) -> dict[str, Any]:
    event["time"] = now()
    event["container_statuses"] = {k: (s.to_wire() if s else None) for k, s in statuses.items()}
    return event


async def stream_log(
    assignment: Assignment, path: Path, upload_log: UploadLog, interval: float = LIVE_LOG_INTERVAL
) -> None:
    """While the main step runs, upload the end of its log whenever it grew (the final log replaces it)."""
    sent = 0
    while True:
        await asyncio.sleep(interval)
        try:
            size = path.stat().st_size
        except OSError:
            continue
        if size != sent:
            data = await asyncio.to_thread(read_log, path, LIVE_LOG_BYTES)
            await upload_log(assignment, "main", data)
            sent = size


def read_log(path: Path, limit: int = MAX_LOG_BYTES) -> bytes:
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            if size <= limit:
                f.seek(0)
                return f.read()
            f.seek(size - limit)
            head = f"[corral: log truncated, first {size - limit} of {size} bytes dropped]\n".encode()
            return head + f.read()
    except FileNotFoundError:
        return b""
