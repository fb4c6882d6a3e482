"""Jobs and resource files of the pipeline DSL (Hail-Batch style).

A resource file renders as a placeholder inside command strings; at submission every job's command
is rendered with the paths as that job sees them under its own /io (see `corral.client.compile`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, Self

from corral.domain.resources import parse_bytes, parse_cpu_mcpu, parse_memory_bytes
from corral.errors import InvalidInput

if TYPE_CHECKING:
    from corral.client.dsl import Batch

PLACEHOLDER = re.compile(r"__CORRAL_RF_([0-9a-f]+)_([0-9]+)__")
_RESOURCE_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,199}$")
_POOL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
MAX_ATTEMPTS = 1000


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

    def __init__(self, batch: Batch, index: int, name: str | None, attributes: dict[str, str] | None) -> None:
        self._batch = batch
        self._index = index  # 1-based position in the Batch object
        self._name = name
        self._commands: list[str] = []
        self._image: str | None = None
        self._cpu: str | None = None
        self._memory: str | None = None
        self._storage: str | None = None
        self._timeout: float | None = None
        self._always_run = False
        self._env: dict[str, str] = {}
        self._n_max_attempts: int | None = None
        self._dependencies: list[Job] = []
        self._attributes: dict[str, str] = dict(attributes or {})
        self._resources: dict[str, JobResourceFile] = {}
        self._absolute_id: int | None = None  # set once submitted
        self._pool: str | None = None

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

    def timeout(self, seconds: float | int) -> Self:
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not seconds > 0:
            raise self._error("timeout", f"{seconds!r} must be a positive number of seconds")
        self._timeout = float(seconds)
        return self

    def pool(self, name: str) -> Self:
        """Run on this pool (an instance collection of the server); default: the server chooses."""
        if not isinstance(name, str) or not _POOL_NAME.match(name):
            raise self._error("pool", f"{name!r} is not a pool name (letters, digits, '_', '.', '-')")
        self._pool = name
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

    def depends_on(self, *jobs: Job) -> Self:
        for job in jobs:
            if not isinstance(job, Job) or job._batch is not self._batch:
                raise self._error("depends_on", f"{job!r} is not a job of the same batch")
            if job is self:
                raise self._error("depends_on", "a job cannot depend on itself")
            if job not in self._dependencies:
                self._dependencies.append(job)
        return self

    def attributes(self, attributes: dict[str, Any] | None = None, **more: Any) -> Self:
        self._attributes.update({str(k): str(v) for k, v in {**(attributes or {}), **more}.items()})
        return self

    def name(self, name: str) -> Self:
        self._name = name
        return self
