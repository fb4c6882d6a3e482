"""One attempt from assignment to its `completed` event: input, main, output, logs uploaded first."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Awaitable, Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from corral.runtimes.base import MainRequest, MainResult, Runtime, now
from corral.runtimes.identity import JobUser, give_to
from corral.worker.layout import AttemptDirs
from corral.worker.protocol import STEPS, Assignment, StepName, StepStatus, started_event
from corral.worker.steps import copy_step
from corral.worker.usage import UsageRecorder

log = logging.getLogger(__name__)

MAX_LOG_BYTES = 32 * 1024 * 1024  # the driver's body limit is 64 MiB; keep the end, where errors are
INLINE_LOG_BYTES = 64 * 1024  # smaller logs ride in the `completed` event: no request of their own
LIVE_LOG_FAST_BYTES = 1024 * 1024
LIVE_LOG_MAX_BYTES = 8 * 1024 * 1024
LIVE_LOG_FIRST = 3.0  # seconds before the live upload starts watching a main step's log

EmitEvent = Callable[[dict[str, Any]], None]
if TYPE_CHECKING:
    from corral.worker.service import ServiceRunner
UploadLog = Callable[[Assignment, StepName, bytes], Awaitable[None]]


def main_request(assignment: Assignment, dirs: AttemptDirs) -> MainRequest:
    spec = assignment.spec
    return MainRequest(
        key=assignment.key,
        command=spec.command,
        io_dir=dirs.real(dirs.io),  # a pooled volume is a symlink: sandboxes bind what it points to
        scratch=dirs.root,
        tmp_dir=dirs.real(dirs.tmp),
        log_path=dirs.log("main"),
        env={**corral_env(assignment), **spec.env},
        image=spec.image,
        network=spec.network,
        cores_mcpu=assignment.cores_mcpu,
        memory_bytes=assignment.memory_bytes,
        storage_bytes=assignment.storage_bytes,
        timeout=spec.timeout,
        devices=assignment.devices,
    )


def corral_env(assignment: Assignment) -> dict[str, str]:
    """Corral's documented variables (docs/jobs.md): a stable key for idempotent side effects."""
    return {
        "CORRAL_BATCH_ID": str(assignment.batch_id),
        "CORRAL_JOB_ID": str(assignment.job_id),
        "CORRAL_JOB_KEY": f"{assignment.batch_id}-{assignment.job_id}",
        "CORRAL_ATTEMPT_ID": str(assignment.attempt_id),
    }


async def upload_live_log(assignment: Assignment, path: Path, upload_log: UploadLog) -> None:
    """While the main step runs, send its log as it grows (the job page tails it): every 3 s while
    under 1 MiB, every 15 s up to 8 MiB; larger logs arrive when the attempt ends."""
    sent = 0
    while True:
        try:
            size = path.stat().st_size
        except OSError:
            size = 0
        await asyncio.sleep(3.0 if size < LIVE_LOG_FAST_BYTES else 15.0)
        if size == sent or size > LIVE_LOG_MAX_BYTES:
            continue
        try:
            data = await asyncio.to_thread(path.read_bytes)
            await upload_log(assignment, "main", data)
            sent = size
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the final upload still carries the whole log
            log.debug("live log upload of %s failed: %s", assignment.key, exc)


class LiveLog:
    """`upload_live_log` for a main step that runs longer than its first interval: a short job costs a
    timer, not a task of its own (nothing is uploaded before the first interval anyway)."""

    def __init__(self, assignment: Assignment, path: Path, upload_log: UploadLog) -> None:
        self._task: asyncio.Task[None] | None = None
        self._start = asyncio.get_running_loop().call_later(
            LIVE_LOG_FIRST, self._begin, assignment, path, upload_log
        )

    def _begin(self, assignment: Assignment, path: Path, upload_log: UploadLog) -> None:
        self._task = asyncio.create_task(upload_live_log(assignment, path, upload_log))

    def stop(self) -> None:
        self._start.cancel()
        if self._task is not None:
            self._task.cancel()


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
    services: ServiceRunner | None = None,
) -> dict[str, Any]:
    """Run the steps and upload their logs; returns the `completed` event (not yet emitted)."""
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
    if not runtime.uses_scratch:
        return await _run_without_scratch(assignment, runtime, cancel, event, statuses, dirs)
    user = runtime.job_user(assignment.key)
    try:
        return await _run_steps(
            assignment, runtime, dirs, cancel, event, statuses, user, upload_log, emit, services
        )
    finally:
        runtime.release_job_user(assignment.key)


async def _run_steps(
    assignment: Assignment,
    runtime: Runtime,
    dirs: AttemptDirs,
    cancel: asyncio.Event,
    event: dict[str, Any],
    statuses: dict[StepName, StepStatus | None],
    user: JobUser | None,
    upload_log: UploadLog,
    emit: EmitEvent,
    services: ServiceRunner | None = None,
) -> dict[str, Any]:
    spec = assignment.spec

    def fail(step: StepStatus) -> None:
        event["state"] = "cancelled" if step.state == "cancelled" else "error"
        event["error"] = step.error

    try:
        # A few mkdir/chown calls on the worker's local scratch: inline, cheaper than a thread hop each.
        dirs.create()
        await runtime.prepare_io(dirs.volume, assignment.storage_bytes)
        dirs.create_io()
        give_to(user, dirs.io, dirs.tmp)
    except OSError as exc:
        event["state"], event["error"] = "error", f"could not create the job's scratch directory: {exc}"
        return _finish(event, statuses)

    access = spec.file_access
    if spec.input_files:
        copied = await copy_step(
            "input", spec.input_files, dirs.io, dirs.log("input"), cancel, user=user, access=access
        )
        statuses["input"] = copied
        if copied.state != "succeeded":
            fail(copied)
            return await _finish_with_logs(event, statuses, assignment, dirs, upload_log)

    if cancel.is_set():
        event["state"] = "cancelled"
        return await _finish_with_logs(event, statuses, assignment, dirs, upload_log)

    recorder = UsageRecorder(assignment.key, emit)
    live_log = LiveLog(assignment, dirs.log("main"), upload_log)
    try:
        request = replace(main_request(assignment, dirs), usage_sink=recorder.sample)
        if spec.service is not None and services is not None:
            result, event["service"] = await services.run_main(request, spec.service, runtime, cancel, emit)
        else:
            result = await runtime.run(request, cancel)
    except Exception as exc:  # a runtime bug must not lose the attempt: report it as an error
        log.exception("runtime %s failed on %s", runtime.name, assignment.key)
        t = now()
        result = MainResult("error", t, t, error=f"runtime {runtime.name} failed: {exc!r}")
    finally:
        live_log.stop()
        recorder.flush()
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
            copied = await copy_step(
                "output", spec.output_files, dirs.io, dirs.log("output"), cancel, user=user, access=access
            )
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
    paths = [dirs.log(step) for step in ran]
    if sum(_size(p) for p in paths) <= INLINE_LOG_BYTES:  # the usual short job: a few small reads, inline
        contents = [read_log(p) for p in paths]
    else:
        contents = await asyncio.to_thread(lambda: [read_log(p) for p in paths])
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


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


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
