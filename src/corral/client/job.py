"""Jobs and resource files of the pipeline DSL (Hail-Batch style).

A resource file renders as a placeholder inside command strings; at submission every job's command
is rendered with the paths as that job sees them under its own /io (see `corral.client.compile`).
"""

from __future__ import annotations

import difflib
import re
from typing import Any, Protocol, Self

from corral.domain.resources import parse_bytes, parse_cpu_mcpu, parse_memory_bytes
from corral.errors import InvalidInput

PLACEHOLDER = re.compile(r"__CORRAL_RF_([0-9a-f]+)_([0-9]+)__")
_RESOURCE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")
_POOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_ATTEMPTS = 1000
MAX_GPUS = 64
NETWORK_MODES = ("none", "private", "public")


class JobOwner(Protocol):
    """What a Job needs of its Batch (a protocol, so this module does not import the Batch's)."""

    key: str

    def _new_resource_id(self) -> int: ...

    def _register(self, resource: ResourceFile) -> None: ...


class ResourceFile:
    """A file a job uses; `str()` / f-strings give a placeholder the submission replaces with a path."""

    def __init__(self, batch_key: str, rid: int) -> None:
        self._batch_key = batch_key
        self._rid = rid

    @property
    def placeholder(self) -> str:
        return f"__CORRAL_RF_{self._batch_key}_{self._rid}__"

    def __str__(self) -> str:
        return self.placeholder

    def __format__(self, spec: str) -> str:
        return format(self.placeholder, spec)


class JobResourceFile(ResourceFile):
    """A file a job writes at /io/<job-uid>/<name>."""

    def __init__(self, batch_key: str, rid: int, job: Job, name: str) -> None:
        super().__init__(batch_key, rid)
        self.job = job
        self.name = name

    @property
    def io_path(self) -> str:
        return f"/io/{self.job.uid}/{self.name}"

    def __repr__(self) -> str:
        return f"<JobResourceFile {self.job.display_name}.{self.name}>"

    def __call__(self, *args: object, **kwargs: object) -> None:
        close = difflib.get_close_matches(self.name, _METHOD_NAMES, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise TypeError(
            f"job {self.job.display_name}: Job has no method {self.name!r}{hint} (j.{self.name} is an output "
            "file placeholder, which cannot be called)"
        )


class InputResourceFile(ResourceFile):
    """A local path or URL copied into /io/inputs/<rid>/<basename> of every job that uses it."""

    def __init__(self, batch_key: str, rid: int, source: str) -> None:
        super().__init__(batch_key, rid)
        self.source = source

    @property
    def io_path(self) -> str:
        base = self.source.rstrip("/").rsplit("/", 1)[-1] or "input"
        return f"/io/inputs/{self._rid}/{base}"

    def __repr__(self) -> str:
        return f"<InputResourceFile {self.source}>"


class Job:
    """One command of a batch. Setters return the job, so calls chain; unknown attributes (`j.ofile`)
    and items (`j["name"]`) are the job's output resource files."""

    def __init__(
        self, batch: JobOwner, index: int, name: str | None, attributes: dict[str, str] | None
    ) -> None:
        self._batch = batch
        self._index = index  # 1-based position in the Batch object
        self._name = name
        self._commands: list[str] = []
        self._image: str | None = None
        self._cpu: str | None = None
        self._memory: str | None = None
        self._storage: str | None = None
        self._gpus = 0
        self._gpu_type: str | None = None
        self._pool: str | None = None
        self._network: str | None = None
        self._timeout: float | None = None
        self._always_run = False
        self._env: dict[str, str] = {}
        self._n_max_attempts: int | None = None
        self._dependencies: list[Job] = []
        self._attributes: dict[str, str] = dict(attributes or {})
        self._resources: dict[str, JobResourceFile] = {}
        self._absolute_id: int | None = None  # set once submitted
        self._ready_on: list[tuple[Job, str | None]] = []  # services waited on until they serve
        self._service: dict[str, Any] | None = None  # set by Batch.new_service

    # ---- identity

    @property
    def uid(self) -> str:
        return f"j{self._index}"

    @property
    def display_name(self) -> str:
        return repr(self._name) if self._name else f"#{self._index}"

    @property
    def job_id(self) -> int | None:
        """The job's id in the batch once submitted."""
        return self._absolute_id

    def __repr__(self) -> str:
        return f"<Job {self.display_name}>"

    def _error(self, what: str, message: str) -> InvalidInput:
        return InvalidInput(f"job {self.display_name}: {what}: {message}", field=what)

    # ---- resource files

    def _resource(self, name: str) -> JobResourceFile:
        if not _RESOURCE_NAME.match(name) or name in (".", ".."):
            raise self._error(
                "resource file", f"{name!r} is not a valid name; use letters, digits, '_', '.', '-'"
            )
        found = self._resources.get(name)
        if found is None:
            found = JobResourceFile(self._batch.key, self._batch._new_resource_id(), self, name)
            self._batch._register(found)
            self._resources[name] = found
        return found

    def __getattr__(self, name: str) -> JobResourceFile:
        if name.startswith("_"):
            raise AttributeError(name)
        close = method_like(name)
        if close:
            raise AttributeError(
                f"Job has no attribute {name!r}; did you mean {close!r}? (to name an output file that "
                f"looks like a method, use j[{name!r}])"
            )
        return self._resource(name)

    def __getitem__(self, name: str) -> JobResourceFile:
        return self._resource(name)

    # ---- settings (chainable)

    def command(self, command: str) -> Self:
        """Append a bash command; several calls run one after another (like Hail)."""
        if not isinstance(command, str) or not command.strip():
            raise self._error("command", "give a non-empty string")
        self._commands.append(command)
        return self

    def image(self, image: str) -> Self:
        self._image = image
        return self

    def cpu(self, cores: str | float | int) -> Self:
        parse_cpu_mcpu(cores, field=f"job {self.display_name}: cpu")
        self._cpu = str(cores)
        return self

    def memory(self, memory: str | float | int) -> Self:
        parse_memory_bytes(memory, 1000, field=f"job {self.display_name}: memory")
        self._memory = str(memory)
        return self

    def storage(self, storage: str | float | int) -> Self:
        parse_bytes(storage, field=f"job {self.display_name}: storage")
        self._storage = str(storage)
        return self

    def gpus(self, n: int) -> Self:
        """GPUs the job needs (whole devices); the worker makes only those visible to it."""
        if isinstance(n, bool) or not isinstance(n, int) or not 0 <= n <= MAX_GPUS:
            raise self._error("gpus", f"{n!r} must be a whole number from 0 to {MAX_GPUS}")
        self._gpus = n
        return self

    def gpu_type(self, gpu_type: str) -> Self:
        """Only instances with this GPU type (e.g. 'a100'); implies at least one GPU."""
        if not isinstance(gpu_type, str) or not gpu_type.strip():
            raise self._error("gpu_type", "give a GPU type such as 'a100'")
        self._gpu_type = gpu_type.strip()
        if self._gpus == 0:
            self._gpus = 1
        return self

    def pool(self, name: str) -> Self:
        """The instance collection (pool) the job runs on; default: the server's default pool."""
        if not isinstance(name, str) or not _POOL_NAME.match(name):
            raise self._error("pool", f"{name!r} is not a pool name")
        self._pool = name
        return self

    def network(self, mode: str) -> Self:
        """'none' (no network), 'private' or 'public'."""
        if mode not in NETWORK_MODES:
            modes = ", ".join(NETWORK_MODES)
            raise self._error("network", f"{mode!r} is not a network mode; use one of {modes}")
        self._network = mode
        return self

    def timeout(self, seconds: float | int) -> Self:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
            raise self._error("timeout", f"{seconds!r} must be a positive number of seconds")
        self._timeout = float(seconds)
        return self

    def always_run(self, always_run: bool = True) -> Self:
        """Run even if a parent failed or the batch was cancelled (e.g. cleanup)."""
        self._always_run = bool(always_run)
        return self

    def env(self, name: str, value: str) -> Self:
        if not _ENV_NAME.match(name):
            raise self._error("env", f"{name!r} is not a valid environment variable name")
        self._env[name] = str(value)
        return self

    def n_max_attempts(self, n: int) -> Self:
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_ATTEMPTS:
            raise self._error("n_max_attempts", f"{n!r} must be a whole number from 1 to {MAX_ATTEMPTS}")
        self._n_max_attempts = n
        return self

    def depends_on(self, *jobs: Job, when: str = "complete", placement: str | None = None) -> Self:
        """Run after `jobs` complete; with when="ready", start once these services serve (and get their
        endpoints: CORRAL_SERVICE_<NAME>_HOST/_PORT/_URL, `{service.NAME.url}` in the command).
        placement="same"|"other": on the service's instance, or on another one."""
        if when not in ("complete", "ready"):
            raise self._error("depends_on", f"when={when!r}: use 'complete' or 'ready'")
        if placement not in (None, "same", "other"):
            raise self._error("depends_on", f"placement={placement!r}: use 'same' or 'other'")
        if placement is not None and when != "ready":
            raise self._error("depends_on", "placement is relative to a service: use it with when='ready'")
        for job in jobs:
            if not isinstance(job, Job) or job._batch is not self._batch:
                raise self._error("depends_on", f"{job!r} is not a job of the same batch")
            if job is self:
                raise self._error("depends_on", "a job cannot depend on itself")
            if when == "ready":
                if job._service is None:
                    raise self._error(
                        "depends_on", f"{job.display_name} is not a service (Batch.new_service), so it never "
                        "becomes ready; leave out when='ready'",
                    )
                if all(j is not job for j, _ in self._ready_on):
                    self._ready_on.append((job, placement))
            elif job not in self._dependencies:
                self._dependencies.append(job)
        return self

    def attributes(self, attributes: dict[str, Any] | None = None, **more: Any) -> Self:
        self._attributes.update({str(k): str(v) for k, v in {**(attributes or {}), **more}.items()})
        return self

    def name(self, name: str) -> Self:
        self._name = name
        return self


_METHOD_NAMES = [n for n in vars(Job) if not n.startswith("_")]


def method_like(name: str) -> str | None:
    """The Job method `name` is probably a typo of (`timout` -> `timeout`), or None. A method name with
    a number or '_N' after it (`env2`, `out_1`) is taken as a deliberate file name."""
    close = difflib.get_close_matches(name, _METHOD_NAMES, n=1, cutoff=0.8)
    if not close or name == close[0]:
        return None
    rest = name[len(close[0]) :] if name.startswith(close[0]) else None
    if rest is not None and rest.lstrip("_").isdigit():
        return None
    return close[0]
