"""The pipeline DSL (Hail-Batch style): `Batch`, `Job`, resource files, `read_input` / `write_output`.

b = corral.Batch(name="wc", backend=corral.LocalBackend())
a = b.new_job("split"); a.command(f"split -n 4 {b.read_input('data.txt')} {a.ofile}")
handle = b.run()
"""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import Any

from corral.api.schemas import BatchSpec, JobSpec
from corral.client.backends import Backend, LocalBackend
from corral.client.compile import Output, compile_jobs
from corral.client.handle import BatchHandle
from corral.client.job import InputResourceFile, Job, JobResourceFile, ResourceFile
from corral.client.service import Service
from corral.client.submit import Submitted, submit_new_batch, submit_update
from corral.domain.resources import parse_bytes, parse_cpu_mcpu, parse_memory_bytes
from corral.errors import InvalidInput

# Batches submitted by this process, in order (`corral run` reports on them when the script ends).
submitted_batches: list[BatchHandle] = []

__all__ = ["Batch", "BatchHandle", "InputResourceFile", "Job", "JobResourceFile", "ResourceFile", "Service"]


class Batch:
    """A DAG of jobs submitted together. One idempotency token per Batch object: calling run() again
    after a network error returns the same batch instead of creating a second one; jobs added after a
    successful run() are appended to it as an update."""

    def __init__(
        self,
        name: str | None = None,
        backend: Backend | None = None,
        *,
        attributes: dict[str, Any] | None = None,
        billing_project: str | None = None,
        cancel_after_n_failures: int | None = None,
        default_image: str | None = None,
        default_cpu: str | float | None = None,
        default_memory: str | float | None = None,
        default_storage: str | float | None = None,
    ) -> None:
        self.name = name
        self._backend = backend
        self.attributes = {str(k): str(v) for k, v in (attributes or {}).items()}
        if name is not None:
            self.attributes.setdefault("name", name)
        self.billing_project = billing_project
        if cancel_after_n_failures is not None and cancel_after_n_failures < 1:
            raise InvalidInput(f"cancel_after_n_failures: {cancel_after_n_failures!r} must be at least 1")
        self.cancel_after_n_failures = cancel_after_n_failures
        if default_cpu is not None:
            parse_cpu_mcpu(default_cpu, field="default_cpu")
        if default_memory is not None:
            parse_memory_bytes(default_memory, 1000, field="default_memory")
        if default_storage is not None:
            parse_bytes(default_storage, field="default_storage")
        self.defaults: dict[str, str | None] = {
            "image": default_image,
            "cpu": None if default_cpu is None else str(default_cpu),
            "memory": None if default_memory is None else str(default_memory),
            "storage": None if default_storage is None else str(default_storage),
        }
        self.key = secrets.token_hex(4)  # marks this Batch's resource placeholders
        self.token = secrets.token_hex(16)
        self._jobs: list[Job] = []
        self._resources: dict[int, ResourceFile] = {}
        self._outputs: list[Output] = []
        self._batch_id: int | None = None
        self._n_submitted = 0
        self._update_token: str | None = None
        self._tmp_key = self.token  # names this pipeline's tmpdir; a resumed run reuses the old one's
        self._done: set[int] = set()  # indexes of jobs that succeeded in the batch being resumed

    @classmethod
    def from_batch_id(cls, batch_id: int, backend: Backend | None = None) -> Batch:
        """A Batch that appends its jobs to an existing batch (as a new update) when run."""
        batch = cls(backend=backend)
        batch._batch_id = batch_id
        return batch

    # ---- building

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = LocalBackend()
        return self._backend

    @property
    def id(self) -> int | None:
        """The batch id once submitted."""
        return self._batch_id

    @property
    def jobs(self) -> list[Job]:
        return list(self._jobs)

    def _new_resource_id(self) -> int:
        return len(self._resources) + 1

    def _register(self, resource: ResourceFile) -> None:
        self._resources[resource._rid] = resource

    def new_job(self, name: str | None = None, attributes: dict[str, Any] | None = None) -> Job:
        job = Job(self, len(self._jobs) + 1, name, {str(k): str(v) for k, v in (attributes or {}).items()})
        self._jobs.append(job)
        return job

    def new_service(
        self, name: str, ports: list[str] | None = None, attributes: dict[str, Any] | None = None,
        *, scheme: str = "http",
    ) -> Service:
        """A service job: its worker allocates `ports` (CORRAL_PORT_<NAME>, `{port.name}`), probes it
        (`ready(...)`) and hands its endpoint to jobs that `depends_on(svc, when="ready")`."""
        job = Service(self, len(self._jobs) + 1, name, ports or ["main"],
                      {str(k): str(v) for k, v in (attributes or {}).items()}, scheme)
        self._jobs.append(job)
        return job

    def read_input(self, path: str | Path) -> InputResourceFile:
        """A local path (relative to the cwd at run()) or URL, copied into each job that uses it."""
        text = str(path)
        if not text.strip():
            raise InvalidInput("read_input: give a path or URL", field="read_input")
        resource = InputResourceFile(self.key, self._new_resource_id(), text)
        self._register(resource)
        return resource

    def write_output(self, resource: ResourceFile, dest: str | Path) -> None:
        """Copy a job's resource file to `dest` (local path relative to the cwd at run(), or URL)."""
        if isinstance(resource, InputResourceFile):
            raise InvalidInput(
                f"write_output: {resource.source!r} is an input; copy it yourself or write a job's output",
                field="write_output",
            )
        if not isinstance(resource, JobResourceFile) or resource.job._batch is not self:
            raise InvalidInput(
                f"write_output: {resource!r} is not a resource file of this Batch", field="write_output"
            )
        if resource.job.job_id is not None:
            raise InvalidInput(
                f"write_output: job {resource.job.display_name} was already submitted; call write_output "
                "before run()",
                field="write_output",
            )
        self._outputs.append(Output(resource, str(dest)))

    # ---- submitting

    def _pending(self) -> list[Job]:
        return [j for j in self._jobs[self._n_submitted :] if j._index not in self._done]

    def compile(self, *, tmpdir: str | None = None, cwd: Path | None = None) -> list[JobSpec]:
        """The wire specs run() would send for the jobs not yet submitted."""
        return compile_jobs(
            self._pending(),
            registry=self._resources,
            batch_key=self.key,
            tmpdir=tmpdir if tmpdir is not None else self.tmpdir,
            outputs=self._outputs,
            cwd=cwd or Path.cwd(),
            defaults=self.defaults,
            done=self._done,
        )

    @property
    def tmpdir(self) -> str:
        """Where intermediate files of this Batch object go."""
        return f"{self.backend.tmpdir}/{self._tmp_key}"

    def submit(self) -> BatchHandle:
        """Send the jobs added since the last submission; returns without waiting."""
        backend = self.backend
        client = backend.client()
        pending = self._pending()
        if not pending:
            if self._batch_id is None:
                raise InvalidInput("the batch has no jobs; add some with new_job() before run()")
            return BatchHandle(client, self._batch_id)
        specs = self.compile()
        submitted: Submitted
        if self._batch_id is None:
            spec = BatchSpec(
                billing_project=self.billing_project or backend.billing_project,
                token=self.token,
                attributes=self.attributes,
                cancel_after_n_failures=self.cancel_after_n_failures,
            )
            submitted = client.run(submit_new_batch(client.aio, spec, specs))
        else:
            if self._update_token is None:
                self._update_token = secrets.token_hex(16)
            submitted = client.run(submit_update(client.aio, self._batch_id, self._update_token, specs))
            self._update_token = None
        if self._batch_id is None:
            submitted_batches.append(BatchHandle(client, submitted.batch_id))
        self._batch_id = submitted.batch_id
        for offset, job in enumerate(pending):
            job._absolute_id = submitted.start_job_id + offset
        self._n_submitted = len(self._jobs)
        return BatchHandle(client, submitted.batch_id)

    def run(
        self,
        wait: bool = True,
        progress: bool = True,
        timeout: float | None = None,
        *,
        check: bool = True,
        resume: int | None = None,
    ) -> BatchHandle:
        """Submit, then (by default) wait with a progress bar on a terminal. Returns the batch's handle.

        check: when the batch does not succeed, raise BatchFailed, whose message says which jobs failed,
        why, and how to read their logs (as Hail's run() raises). resume: the id of an earlier batch of
        this same pipeline; jobs that succeeded there are not run again (their files are reused), only
        those that failed or were cancelled."""
        if resume is not None:
            self._resume_from(resume)
        handle = self.submit()
        if wait:
            status = handle.wait(progress=progress, timeout=timeout)
            if check:
                handle.check(status)
        return handle

    def _resume_from(self, batch_id: int) -> None:
        if self._batch_id is not None:
            raise InvalidInput("resume: this Batch was already submitted; resume with a new Batch object")
        client = self.backend.client()
        old = client.get_batch(batch_id)
        if not old.complete:
            raise InvalidInput(
                f"resume: batch {batch_id} is still running; wait for it (`corral batch wait {batch_id}`) "
                f"or cancel it first", field="resume",
            )
        states = {j.job_id: j for j in client.iter_jobs(batch_id)}
        if len(states) != len(self._jobs):
            raise InvalidInput(
                f"resume: batch {batch_id} has {len(states)} jobs but this pipeline has {len(self._jobs)}; "
                "resume only a batch this same pipeline created", field="resume",
            )
        for job in self._jobs:
            old_job = states.get(job._index)
            old_name = old_job.name if old_job is not None else None
            if old_job is None or old_name != job._name:
                raise InvalidInput(
                    f"resume: job {job._index} of batch {batch_id} is {old_name!r}, here it is "
                    f"{job._name!r}; resume only a batch this same pipeline created", field="resume",
                )
        self._done = {i for i, j in states.items() if j.state == "Success"}
        self._tmp_key = old.token
        self.attributes["resumed_from"] = str(batch_id)
        if len(self._done) == len(self._jobs):
            raise InvalidInput(f"resume: every job of batch {batch_id} succeeded; nothing to rerun",
                               field="resume")
