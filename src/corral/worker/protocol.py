"""The worker protocol (docs/worker-protocol.md), one module for both ends.

The driver and the worker share: the attempt key `batch.job.attempt` (formatted and parsed only here),
the assignment (built by `assignment_payload`, read by `parse_assignment`), the events a worker
reports (`started`, `usage`, `completed`; validated at the driver's edge by `EventsRequest`) and the
activate/poll bodies.
A malformed event is rejected with a 400 for that worker and never reaches the driver's tick.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator

from corral.errors import InvalidInput

# ---------------------------------------------------------------- the attempt key

MAX_ID = 2**62  # ids fit a signed 64-bit column with room to spare
_KEY = re.compile(r"^([0-9]{1,19})\.([0-9]{1,19})\.([0-9]{1,19})$")


class AttemptKey(NamedTuple):
    """`batch.job.attempt`: names one attempt on the wire, in logs and in the driver's maps."""

    batch_id: int
    job_id: int
    attempt_id: int

    def __str__(self) -> str:
        return f"{self.batch_id}.{self.job_id}.{self.attempt_id}"

    @classmethod
    def parse(cls, text: str) -> AttemptKey:
        match = _KEY.match(text)
        if match is None:
            raise InvalidInput(f"attempt key {text[:40]!r} is not batch.job.attempt", field="key")
        ids = tuple(int(part) for part in match.groups())
        if not all(1 <= i <= MAX_ID for i in ids):
            raise InvalidInput(f"attempt key {text[:40]!r}: ids must be between 1 and 2**62", field="key")
        return cls(*ids)


# ---------------------------------------------------------------- worker -> driver bodies

Int32 = Annotated[int, Field(ge=-(2**31), le=2**31 - 1)]
_SURROGATE = re.compile("[\ud800-\udfff]")  # lone halves: UTF-8 (and so the store) cannot hold them
MAX_TEXT = 64 * 1024  # an error message longer than this is cut (marked), not refused
MAX_EVENTS = 10_000


def _clean(value: Any, depth: int = 0) -> Any:
    """Strings a store can keep: NUL and lone surrogates replaced, long strings cut; bounded nesting."""
    if depth > 16:
        raise ValueError("nested more than 16 levels")
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            value = value[:MAX_TEXT] + "…[cut]"
        if "\x00" in value:
            value = value.replace("\x00", "\ufffd")
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("numbers must be finite")
    if isinstance(value, dict):
        return {str(_clean(k, depth + 1)): _clean(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_clean(v, depth + 1) for v in value]
    return value


class _Wire(BaseModel):
    # Unknown fields are ignored (an older driver talks to a newer worker); known ones are checked.
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class _Event(_Wire):
    key: str = Field(max_length=60)
    time: float = Field(ge=0, allow_inf_nan=False)

    @field_validator("key")
    @classmethod
    def _key_is_an_attempt(cls, key: str) -> str:
        try:
            AttemptKey.parse(key)
        except InvalidInput as exc:
            raise ValueError(exc.message) from None
        return key

    @property
    def attempt(self) -> AttemptKey:
        return AttemptKey.parse(self.key)


class StartedEvent(_Event):
    type: Literal["started"]


class CompletedEvent(_Event):
    type: Literal["completed"]
    state: Literal["succeeded", "failed", "error", "cancelled"]
    exit_code: Int32 | None = None
    error: str | None = None
    out_of_memory: bool = False
    timed_out: bool = False
    container_statuses: dict[str, Any] = Field(default_factory=dict)
    resource_usage: dict[str, Any] = Field(default_factory=dict)
    logs: dict[str, str] | None = None  # small step logs, base64, taken out before the tick
    service: dict[str, Any] | None = None  # a service job: ports, probes, readiness, last error

    @field_validator("error", "container_statuses", "resource_usage", "service", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return _clean(value)


class ReturnedEvent(_Event):
    """The worker gives back an attempt it held without starting it (its cores stayed busy longer than it
    waits, or it is draining): the driver runs the job again, and this attempt is neither counted against
    n_max_attempts nor charged. Only to a worker that declared `queues` does the driver hand attempts
    beyond its free cores; any worker holds one that does not fit by its own count of its cores."""

    type: Literal["returned"]
    waited: float = Field(default=0.0, ge=0, le=10**7, allow_inf_nan=False)  # seconds held


class Endpoint(_Wire):
    host: str = Field(min_length=1, max_length=255)
    ports: dict[Annotated[str, Field(max_length=32)], Annotated[int, Field(ge=1, le=65535)]] = Field(
        min_length=1, max_length=16
    )
    scheme: str = Field(default="http", max_length=20)


class ServingEvent(_Event):
    """A service job passed its readiness probes: where it is reached, and how long it took."""

    type: Literal["serving"]
    endpoint: Endpoint
    probes: list[dict[str, Any]] = Field(default_factory=list, max_length=64)
    ready_seconds: float | None = Field(default=None, ge=0, allow_inf_nan=False)

    @field_validator("probes", mode="after")
    @classmethod
    def _storable(cls, value: Any) -> Any:
        return _clean(value)



UsageSample = tuple[
    Annotated[float, Field(ge=0, allow_inf_nan=False)],  # when the sample was taken
    Annotated[int, Field(ge=0, le=2**31 - 1)],  # cores used since the previous sample, x1000
    Annotated[int, Field(ge=0, le=2**62)],  # memory in use, bytes
]


class UsageEvent(_Event):
    """A running attempt's resource usage samples (the job page's plots); `time`: when it was sent."""

    type: Literal["usage"]
    samples: list[UsageSample] = Field(max_length=1000)


WorkerEvent = Annotated[
    StartedEvent | CompletedEvent | ServingEvent | UsageEvent | ReturnedEvent, Field(discriminator="type")
]


AttemptKeyText = Annotated[str, Field(max_length=60)]
MAX_KNOWN = 100_000


class EventsRequest(_Wire):
    """`known` (optional): the worker's running and unacknowledged attempts, as in a poll. When given, the
    reply carries what a poll would (new assignments, cancels, stops, shutdown) after the events are
    durable, so a worker with a stream of short jobs needs no separate poll per job."""

    events: list[WorkerEvent] = Field(max_length=MAX_EVENTS)
    known: list[AttemptKeyText] | None = Field(default=None, max_length=MAX_KNOWN)


class ActivateRequest(_Wire):
    cores_mcpu: int = Field(gt=0, le=2**31 - 1)
    memory_bytes: int = Field(gt=0, le=2**62)
    version: str = Field(default="", max_length=200)
    runtimes: list[Annotated[str, Field(max_length=100)]] = Field(default_factory=list, max_length=20)
    hostname: str | None = Field(default=None, max_length=255)  # shown by `corral instance list`
    # The worker holds assignments beyond its free cores until cores free (FIFO) and gives back, with a
    # `returned` event, one it cannot start in time: the driver may then hand it a few jobs ahead.
    queues: bool = False


class PollRequest(_Wire):
    known: list[AttemptKeyText] = Field(default_factory=list, max_length=MAX_KNOWN)
    wait: float = Field(default=20.0, ge=0, le=60)


# ---------------------------------------------------------------- driver -> worker: the replies

def carries_work(reply: dict[str, Any]) -> bool:
    """An events reply from a driver that answered `known` (an older driver sends only `ack`)."""
    return "assign" in reply


# ---------------------------------------------------------------- driver -> worker: the assignment


def assignment_payload(
    key: AttemptKey, spec: dict[str, Any], cores_mcpu: int, memory_bytes: int, storage_bytes: int
) -> dict[str, Any]:
    """The assignment as the driver sends it; `parse_assignment` reads it on the worker."""
    return {
        "key": str(key), "batch_id": key.batch_id, "job_id": key.job_id, "attempt_id": key.attempt_id,
        "spec": spec, "cores_mcpu": cores_mcpu, "memory_bytes": memory_bytes, "storage_bytes": storage_bytes,
    }

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
    file_access: str = "job"  # "worker": the embedded default's own user (local copies with its rights)


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
            file_access="worker" if spec.get("file_access") == "worker" else "job",
        )
        key = AttemptKey.parse(str(raw["key"]))
        if key != (int(raw["batch_id"]), int(raw["job_id"]), int(raw["attempt_id"])):
            raise InvalidInput(f"key {key} does not match batch_id, job_id and attempt_id")
        return Assignment(
            key=str(key),
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
