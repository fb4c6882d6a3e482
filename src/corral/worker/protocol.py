"""The worker side of docs/worker-protocol.md: assignments in, events and step statuses out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from corral.errors import InvalidInput

StepName = Literal["input", "main", "output"]
StepState = Literal["succeeded", "failed", "error", "cancelled", "skipped"]
STEPS: tuple[StepName, ...] = ("input", "main", "output")


@dataclass(frozen=True)
class FileSpec:
    source: str  # "from": a URL (input) or a path under /io (output)
    dest: str  # "to": a path under /io (input) or a URL (output)


@dataclass(frozen=True)
class JobSpec:
    command: list[str]
    image: str | None = None
    runtime: str = "process"
    env: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    input_files: list[FileSpec] = field(default_factory=list)
    output_files: list[FileSpec] = field(default_factory=list)
    always_copy_output: bool = False
    network: str | None = None
    gpus: int = 0
    service: dict[str, Any] | None = None  # a service job: ports, probes, deadline, grace period


@dataclass(frozen=True)
class Assignment:
    key: str
    batch_id: int
    job_id: int
    attempt_id: int
    spec: JobSpec
    cores_mcpu: int
    memory_bytes: int
    storage_bytes: int = 0
    devices: tuple[str, ...] = ()  # set by this worker: device nodes of the attempt's GPUs


def _files(raw: Any, what: str) -> list[FileSpec]:
    if not raw:
        return []
    try:
        return [FileSpec(str(f["from"]), str(f["to"])) for f in raw]
    except (KeyError, TypeError) as exc:
        raise InvalidInput(f"{what}: each entry needs 'from' and 'to'") from exc


def parse_assignment(raw: dict[str, Any]) -> Assignment:
    """Wire dict -> Assignment; InvalidInput names what is wrong."""
    try:
        spec = raw.get("spec") or {}
        command = spec.get("command")
        if not isinstance(command, list) or not command or not all(isinstance(c, str) for c in command):
            raise InvalidInput("spec.command must be a non-empty list of strings")
        timeout = spec.get("timeout")
        job = JobSpec(
            command=list(command),
            image=spec.get("image") or None,
            runtime=str(spec.get("runtime") or "process"),
            env={str(k): str(v) for k, v in (spec.get("env") or {}).items()},
            timeout=float(timeout) if timeout is not None else None,
            input_files=_files(spec.get("input_files"), "spec.input_files"),
            output_files=_files(spec.get("output_files"), "spec.output_files"),
            always_copy_output=bool(spec.get("always_copy_output", False)),
            network=spec.get("network"),
            gpus=int(spec.get("gpus") or 0),
            service=spec.get("service") if isinstance(spec.get("service"), dict) else None,
        )
        return Assignment(
            key=str(raw["key"]),
            batch_id=int(raw["batch_id"]),
            job_id=int(raw["job_id"]),
            attempt_id=int(raw["attempt_id"]),
            spec=job,
            cores_mcpu=int(raw.get("cores_mcpu") or 1000),
            memory_bytes=int(raw.get("memory_bytes") or 0),
            storage_bytes=int(raw.get("storage_bytes") or 0),
        )
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise InvalidInput(f"malformed assignment: {exc!r}") from exc


@dataclass
class StepStatus:
    name: StepName
    state: StepState
    start: float
    end: float
    exit_code: int | None = None
    error: str | None = None
    out_of_memory: bool = False
    note: str | None = None

    def to_wire(self) -> dict[str, Any]:
        wire: dict[str, Any] = {
            "name": self.name,
            "state": self.state,
            "exit_code": self.exit_code,
            "timing": {
                "start": self.start,
                "end": self.end,
                "duration_ms": max(0, round((self.end - self.start) * 1000)),
            },
            "error": self.error,
            "out_of_memory": self.out_of_memory,
        }
        if self.note:
            wire["note"] = self.note
        return wire


def started_event(key: str, time: float) -> dict[str, Any]:
    return {"type": "started", "key": key, "time": time}
