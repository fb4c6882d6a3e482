"""Turn DSL jobs into wire job specs (pure: no I/O besides path checks) and split them into bunches.

Paths: a job's own resource files live at /io/<uid>/<name>; a resource of another job is copied in
from the batch's tmpdir to the same path (and the producer copies it out there), which also makes
the producer a parent; inputs arrive at /io/inputs/<rid>/<basename>.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from corral.api.schemas import EnvVar, FileTransfer, JobSpec, ProcessSpec, ResourcesSpec
from corral.client.job import PLACEHOLDER, InputResourceFile, Job, JobResourceFile, ResourceFile
from corral.domain.dag import find_cycle
from corral.errors import InvalidInput

MAX_BUNCH_JOBS = 1000
MAX_BUNCH_BYTES = 8 * 1024 * 1024
SHELL = "/bin/bash"


def to_url(location: str, cwd: Path) -> str:
    """A URL stays as is; a local path (relative to `cwd`) becomes a file:// URL."""
    if "://" in location:
        return location
    path = Path(os.path.expanduser(location))
    return f"file://{(cwd / path).resolve() if not path.is_absolute() else path}"


def _transfer(src: str, dst: str) -> FileTransfer:
    return FileTransfer.model_validate({"from": src, "to": dst})


@dataclass
class Output:
    """`Batch.write_output(resource, dest)`."""

    resource: JobResourceFile
    dest: str


@dataclass
class _Plan:
    used: dict[int, list[ResourceFile]] = field(default_factory=dict)  # job index -> resources in its command
    exported: set[int] = field(default_factory=set)  # rids a consumer copies from the tmpdir


def _resolve(job: Job, rid: int, registry: dict[int, ResourceFile], key: str, batch_key: str) -> ResourceFile:
    found = registry.get(rid) if key == batch_key else None
    if found is None:
        raise InvalidInput(
            f"job {job.display_name}: its command uses a resource file of another Batch; "
            "resource files only move between jobs of the same Batch",
            field="command",
        )
    return found


def _plan(jobs: Sequence[Job], registry: dict[int, ResourceFile], batch_key: str) -> _Plan:
    plan = _Plan()
    for job in jobs:
        if not job._commands:
            raise InvalidInput(f"job {job.display_name}: has no command; call .command(...)", field="command")
        seen: dict[int, ResourceFile] = {}
        for match in PLACEHOLDER.finditer("\n".join(job._commands)):
            resource = _resolve(job, int(match.group(2)), registry, match.group(1), batch_key)
            seen.setdefault(int(match.group(2)), resource)
            if isinstance(resource, JobResourceFile) and resource.job is not job:
                plan.exported.add(int(match.group(2)))
        plan.used[job._index] = list(seen.values())
    return plan


def _render(job: Job, resources: list[ResourceFile]) -> str:
    text = "\n".join(job._commands)
    for resource in resources:
        assert isinstance(resource, JobResourceFile | InputResourceFile)
        text = text.replace(resource.placeholder, resource.io_path)
    prefix = f"set -e\nmkdir -p /io/{job.uid}\n" if job._resources else "set -e\n"
    return prefix + text


def _parents(job: Job, resources: list[ResourceFile]) -> list[Job]:
    parents = list(job._dependencies)
    for resource in resources:
        if isinstance(resource, JobResourceFile) and resource.job is not job and resource.job not in parents:
            parents.append(resource.job)
    return parents


def check_acyclic(jobs: Sequence[Job], parents: dict[int, list[Job]]) -> None:
    graph = {j._index: [p._index for p in parents[j._index]] for j in jobs if parents[j._index]}
    cycle = find_cycle(graph) if graph else None
    if cycle:
        names = {j._index: j.display_name for j in jobs}
        raise InvalidInput(
            "the jobs form a cycle (" + " -> ".join(names.get(i, str(i)) for i in cycle) + "); "
            "a job cannot depend on its own descendants",
            field="depends_on",
        )


def compile_jobs(
    jobs: Sequence[Job],
    *,
    registry: dict[int, ResourceFile],
    batch_key: str,
    tmpdir: str,
    outputs: Sequence[Output],
    cwd: Path,
    defaults: dict[str, str | None] | None = None,
) -> list[JobSpec]:
    """Wire specs for `jobs` (one update): job_id i+1 for jobs[i]; parents inside the update by in-update
    id, already submitted parents by absolute id."""
    defaults = defaults or {}
    plan = _plan(jobs, registry, batch_key)
    position = {job._index: i + 1 for i, job in enumerate(jobs)}
    parents = {job._index: _parents(job, plan.used[job._index]) for job in jobs}
    check_acyclic(jobs, parents)
    tmp = tmpdir.rstrip("/")
    specs: list[JobSpec] = []
    for job in jobs:
        used = plan.used[job._index]
        inputs: list[FileTransfer] = []
        for resource in used:
            if isinstance(resource, InputResourceFile):
                source = to_url(resource.source, cwd)
                if source.startswith("file://") and not os.path.exists(source[len("file://") :]):
                    raise InvalidInput(
                        f"read_input({resource.source!r}): {source[len('file://') :]} does not exist",
                        field="read_input",
                    )
                inputs.append(_transfer(source, resource.io_path))
            elif isinstance(resource, JobResourceFile) and resource.job is not job:
                inputs.append(_transfer(f"{tmp}/{resource.job.uid}/{resource.name}", resource.io_path))
        outs = [
            _transfer(r.io_path, f"{tmp}/{job.uid}/{r.name}")
            for r in job._resources.values()
            if r._rid in plan.exported
        ]
        for out in outputs:
            if out.resource.job is job:
                if out.resource not in used:
                    raise InvalidInput(
                        f"write_output: job {job.display_name} never mentions {out.resource.name!r} in its "
                        "command, so it cannot write it",
                        field="write_output",
                    )
                outs.append(_transfer(out.resource.io_path, to_url(out.dest, cwd)))
        in_update, absolute = [], []
        for parent in parents[job._index]:
            if parent._index in position:
                in_update.append(position[parent._index])
            elif parent._absolute_id is not None:
                absolute.append(parent._absolute_id)
            else:  # pragma: no cover - a parent is either in this update or already submitted
                raise InvalidInput(
                    f"job {job.display_name}: parent {parent.display_name} was never submitted"
                )
        for resource in used:
            if (
                isinstance(resource, JobResourceFile)
                and resource.job is not job
                and resource.job._index not in position
            ):
                raise InvalidInput(
                    f"job {job.display_name}: uses {resource.name!r} of job {resource.job.display_name}, "
                    "which was submitted before without exporting it; use it in the same run()",
                    field="command",
                )
        attributes = dict(job._attributes)
        if job._name:
            attributes.setdefault("name", job._name)
        specs.append(
            JobSpec(
                job_id=position[job._index],
                name=job._name,
                process=ProcessSpec(
                    type="docker",
                    image=job._image or defaults.get("image"),
                    command=[SHELL, "-c", _render(job, used)],
                ),
                in_update_parent_ids=sorted(in_update),
                absolute_parent_ids=sorted(absolute),
                resources=ResourcesSpec(
                    cpu=job._cpu or defaults.get("cpu"),
                    memory=job._memory or defaults.get("memory"),
                    storage=job._storage or defaults.get("storage"),
                ),
                env=[EnvVar(name=k, value=v) for k, v in job._env.items()],
                timeout=job._timeout,
                always_run=job._always_run,
                n_max_attempts=job._n_max_attempts or 20,
                attributes=attributes,
                input_files=inputs,
                output_files=outs,
                pool=job._pool,
            )
        )
    return specs


def split_bunches(
    specs: Sequence[JobSpec], *, max_jobs: int = MAX_BUNCH_JOBS, max_bytes: int = MAX_BUNCH_BYTES
) -> list[list[JobSpec]]:
    """Contiguous bunches of at most `max_jobs` specs and about `max_bytes` of JSON each."""
    bunches: list[list[JobSpec]] = []
    current: list[JobSpec] = []
    size = 0
    for spec in specs:
        n = len(spec.model_dump_json(by_alias=True, exclude_none=True))
        if current and (len(current) >= max_jobs or size + n > max_bytes):
            bunches.append(current)
            current, size = [], 0
        current.append(spec)
        size += n
    if current:
        bunches.append(current)
    return bunches
