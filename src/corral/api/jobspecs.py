"""Turn wire job specs of one bunch into validated job rows (no I/O). Fields in errors name the job index."""

from __future__ import annotations

import math
from collections.abc import Sequence

import orjson
from pydantic import TypeAdapter, ValidationError

from corral.api.errors import validation_error_field
from corral.api.schemas import MAX_JOBS_PER_BUNCH, JobSpec
from corral.domain.dag import check_job_ids, find_cycle
from corral.domain.resources import ResourceRequest, parse_resources
from corral.domain.services import parse_service
from corral.errors import InvalidInput
from corral.files.roots import FileRoots, local_path
from corral.images.reference import parse_reference
from corral.store.batches import UpdateRecord
from corral.store.jobs_write import NewJob

SUPPORTED_PROCESS_TYPES = frozenset({"docker"})
NETWORK_MODES = (None, "none", "private", "public")
MAX_TIMEOUT_SECONDS = 30 * 24 * 3600.0
_BUNCH = TypeAdapter(list[JobSpec])


def parse_bunch(body: bytes, *, field: str = "bunch") -> list[JobSpec]:
    """A JSON list of job specs (the body of jobs/create); 400 naming the first bad field.

    A well-formed bunch is validated straight from the bytes (pydantic's own JSON reader: no intermediate
    dicts and lists to build and free, a sixth less of a 10,000-job bunch's parsing and freeing). Whatever
    that path refuses, or could accept where orjson refuses (NaN and infinities, which the standard JSON
    has not), is parsed again the way it always was, so a bad bunch gets the same 400 and an accepted one
    the same values (the one exception: see _finite_where_free)."""
    fast = _fast_bunch(body, field)
    if fast is not None:
        return fast
    try:
        raw = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(f"body: not valid JSON ({exc})", field="body") from None
    if not isinstance(raw, list):
        raise InvalidInput(f"{field}: send a JSON list of job specs", field=field)
    check_bunch_size(len(raw), field=field)
    try:
        return _BUNCH.validate_python(raw)
    except ValidationError as exc:
        errors = exc.errors()
        path, message = validation_error_field(dict(errors[0]), prefix=field)
        raise InvalidInput(message, field=path) from None


def _fast_bunch(body: bytes, field: str) -> list[JobSpec] | None:
    """The bunch, if pydantic's JSON reader takes it and it holds only finite numbers; else None. Too
    many jobs is the orjson path's 400 at once (that path would read them all again to say it)."""
    if b"NaN" in body or b"Infinity" in body:  # tokens orjson refuses and pydantic's reader takes
        return None
    try:
        bunch = _BUNCH.validate_json(body)
    except ValueError:  # ValidationError (a bad field, or not JSON at all), or what jiter refuses
        return None
    if not all(map(_finite_where_free, bunch)):
        return None
    check_bunch_size(len(bunch), field=field)
    return bunch


def _finite_where_free(job: JobSpec) -> bool:
    """Typed numbers refuse infinities themselves (allow_inf_nan=False); free-form values (the service,
    unknown keys kept as extras) would take the infinity that pydantic's reader makes of 1e400. (An
    unknown key of an env entry is dropped unread on both paths, but for such a number, which orjson
    refuses: the one bunch this path takes and the other did not, with the same jobs.)"""
    process, resources = job.process, job.resources
    free = (job.service, job.__pydantic_extra__, process.__pydantic_extra__, resources.__pydantic_extra__)
    return not any(free) or all(map(_finite, free))


def _finite(value: object) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def check_bunch_size(n: int, *, field: str = "bunch") -> None:
    if n > MAX_JOBS_PER_BUNCH:
        raise InvalidInput(
            f"{field}: {n} jobs in one bunch; send at most {MAX_JOBS_PER_BUNCH} per call and split the rest "
            "into more bunches",
            field=field,
        )


def check_root_job_group(bunch: Sequence[JobSpec], *, field: str = "bunch") -> None:
    """The native API has no job groups (they live in the Hail-compatible API): only the root, 0."""
    for index, job in enumerate(bunch):
        for name in ("in_update_job_group_id", "absolute_job_group_id"):
            if getattr(job, name) not in (None, 0):
                raise InvalidInput(
                    f"{field}[{index}].{name}: job groups are available through the Hail-compatible API "
                    "(/api/v1alpha); here leave it out or use 0",
                    field=f"{field}[{index}].{name}",
                )


def worker_spec(job: JobSpec, files: FileRoots | None = None) -> dict[str, object]:
    """The `spec` column: exactly what docs/worker-protocol.md's Assignment.spec carries."""
    spec: dict[str, object] = {
        "command": list(job.process.command),
        "image": job.process.image,
        "env": {e.name: e.value for e in job.env} if job.env else {},
        "timeout": job.timeout,
        "input_files": [{"from": f.from_, "to": f.to} for f in job.input_files] if job.input_files else [],
        "output_files": [{"from": f.from_, "to": f.to} for f in job.output_files] if job.output_files else [],
        "always_copy_output": job.always_copy_output,
        "network": job.network,
    }
    if files is not None and files.as_worker and (job.input_files or job.output_files):
        urls = [f.from_ for f in job.input_files] + [f.to for f in job.output_files]
        if any(local_path(u, field="url") is not None for u in urls):
            spec["file_access"] = "worker"  # the embedded default's own user: their files, their rights
    if job.env:
        secret = [e.name for e in job.env if e.secret]
        if secret:
            spec["secret_env"] = secret
    if job.resources.gpus:
        spec["gpus"] = job.resources.gpus  # the worker picks which of its devices the job sees
    return spec


def _service_fields(
    job: JobSpec, bunch: Sequence[JobSpec], upd: UpdateRecord, at: str, spec: dict[str, object]
) -> list[int]:
    """A service's checked spec, and the services a job waits for; returns their absolute ids."""
    if job.service is not None:
        spec["service"] = parse_service(job.service, f"{at}.service").to_wire()
        spec["service_name"] = job.name or job.attributes.get("name") or f"job{job.job_id}"
        if job.network == "none":
            raise InvalidInput(
                f"{at}.network: a service must be reachable by other jobs; "
                "leave network out, or use 'public' or 'private'", field=f"{at}.network",
            )
        # public: the instance's network where the site allows it ([jobs] host_network), else a private
        # one whose ports the worker forwards from the instance; private: always the latter
        spec["network"] = job.network or "public"
    if not job.ready_parents:
        return []
    services = {j.job_id for j in bunch if j.service is not None}
    links: list[dict[str, object]] = []
    ids: list[int] = []
    for i, parent in enumerate(job.ready_parents):
        where = f"{at}.ready_parents[{i}]"
        if parent.absolute:
            if not 1 <= parent.job_id < upd.start_job_id:
                raise InvalidInput(f"{where}.job_id: {parent.job_id} is not a job of an earlier update",
                                   field=f"{where}.job_id")
            absolute = parent.job_id
        else:
            if not 1 <= parent.job_id <= upd.n_jobs or parent.job_id == job.job_id:
                raise InvalidInput(f"{where}.job_id: {parent.job_id} is not another job of this update",
                                   field=f"{where}.job_id")
            in_bunch = any(j.job_id == parent.job_id for j in bunch)
            if in_bunch and parent.job_id not in services:
                raise InvalidInput(
                    f"{where}.job_id: job {parent.job_id} is not a service, so it never becomes ready; "
                    "wait for its completion with in_update_parent_ids instead", field=f"{where}.job_id",
                )
            absolute = upd.start_job_id + parent.job_id - 1
        ids.append(absolute)
        links.append({"job_id": absolute, "placement": parent.placement})
    spec["service_links"] = links
    if spec.get("network") is None:
        spec["network"] = "public"  # reaches the service at the instance's address
    spec["command_template"] = list(job.process.command)
    return ids


class _ResourceCache:
    """Bunches repeat the same few resource strings: parse each distinct triple once."""

    def __init__(self) -> None:
        self._parsed: dict[tuple[object, ...], ResourceRequest] = {}

    def parse(self, job: JobSpec, at: str) -> ResourceRequest:
        r = job.resources
        key = (r.cpu, r.memory, r.storage, r.gpus, r.gpu_type)
        found = self._parsed.get(key)
        if found is None:
            found = parse_resources(
                r.cpu, r.memory, r.storage, gpus=r.gpus, gpu_type=r.gpu_type, prefix=f"{at}.resources"
            )
            self._parsed[key] = found
        return found


def _check_process(job: JobSpec, at: str) -> None:
    if job.process.type not in SUPPORTED_PROCESS_TYPES:
        raise InvalidInput(
            f"{at}.process.type: {job.process.type!r} is not supported; "
            "use 'docker' (a command and an image)",
            field=f"{at}.process.type",
        )
    if not job.process.command:
        raise InvalidInput(
            f"{at}.process.command: give the command as a non-empty list of arguments",
            field=f"{at}.process.command",
        )
    if job.process.image is not None:
        parse_reference(job.process.image, field=f"{at}.process.image")  # 400 naming the field
    if job.network not in NETWORK_MODES:
        raise InvalidInput(
            f"{at}.network: {job.network!r} is not a network mode; use 'none', 'private' or 'public'",
            field=f"{at}.network",
        )
    if job.timeout is not None and not 0 < job.timeout <= MAX_TIMEOUT_SECONDS:
        raise InvalidInput(
            f"{at}.timeout: {job.timeout} must be a positive number of seconds, "
            f"at most {MAX_TIMEOUT_SECONDS:.0f}",
            field=f"{at}.timeout",
        )


def _split_parents(job: JobSpec, upd: UpdateRecord, at: str) -> tuple[list[int], list[int]]:
    """(in-update parents, earlier-update parents), both as absolute ids, without duplicates."""
    if not (job.in_update_parent_ids or job.absolute_parent_ids or job.parent_ids):
        return [], []
    own = upd.start_job_id + job.job_id - 1
    inside: set[int] = set()
    earlier: set[int] = set()
    for parent in job.in_update_parent_ids:
        if not 1 <= parent <= upd.n_jobs or parent == job.job_id:
            what = "itself" if parent == job.job_id else f"unknown job {parent}"
            raise InvalidInput(
                f"{at}.in_update_parent_ids: job {job.job_id} names {what} as a parent; in-update parent ids "
                f"go from 1 to {upd.n_jobs} and must not be the job's own id",
                field=f"{at}.in_update_parent_ids",
            )
        inside.add(upd.start_job_id + parent - 1)
    absolute = [*job.absolute_parent_ids, *(job.parent_ids or [])]
    for parent in absolute:
        if upd.start_job_id <= parent <= upd.end_job_id and parent != own:
            inside.add(parent)
        elif 1 <= parent < upd.start_job_id:
            earlier.add(parent)
        else:
            raise InvalidInput(
                f"{at}.absolute_parent_ids: job {job.job_id} has unknown parent {parent}; "
                f"absolute parent ids must name other jobs of the batch (1 to {upd.end_job_id})",
                field=f"{at}.absolute_parent_ids",
            )
    return sorted(inside), sorted(earlier)


def _check_files(job: JobSpec, files: FileRoots, at: str) -> None:
    """file:// URLs only under the user's roots; stored resolved (the 400 names the field)."""
    if not (job.input_files or job.output_files):
        return
    for i, f in enumerate(job.input_files):
        f.from_ = files.check(f.from_, field=f"{at}.input_files[{i}].from")
    for i, f in enumerate(job.output_files):
        f.to = files.check(f.to, field=f"{at}.output_files[{i}].to")


def prepare_bunch(
    bunch: Sequence[JobSpec], upd: UpdateRecord, *, default_pool: str, field: str = "bunch",
    files: FileRoots | None = None,
) -> list[NewJob]:
    """Validate a bunch of an update and build its rows; raises InvalidInput naming the first bad field."""
    check_bunch_size(len(bunch), field=field)
    check_job_ids([job.job_id for job in bunch], upd.n_jobs, field=field)
    resources = _ResourceCache()
    rows: list[NewJob] = []
    in_update_graph: dict[int, list[int]] = {}
    for index, job in enumerate(bunch):
        at = f"{field}[{index}]"
        _check_process(job, at)
        if files is not None:
            _check_files(job, files, at)
        request = resources.parse(job, at)
        inside, earlier = _split_parents(job, upd, at)
        spec = worker_spec(job, files)
        # Most jobs are neither services nor wait for one: skip the call (a bunch has 10,000 jobs).
        ready = _service_fields(job, bunch, upd, at, spec) if job.service is not None or job.ready_parents \
            else []
        for parent in ready:
            if upd.start_job_id <= parent <= upd.end_job_id:
                inside = sorted({*inside, parent})
            else:
                earlier = sorted({*earlier, parent})
        if inside:
            in_update_graph[job.job_id] = [p - upd.start_job_id + 1 for p in inside]
        attributes = dict(job.attributes)
        name = job.name if job.name is not None else attributes.get("name")
        if name is not None:
            attributes["name"] = name
        rows.append(
            NewJob(
                job_id=upd.start_job_id + job.job_id - 1,
                path=at,
                name=name,
                pool=job.pool or default_pool,
                cores_mcpu=request.cores_mcpu,
                memory_bytes=request.memory_bytes,
                storage_bytes=request.storage_bytes,
                gpus=request.gpus,
                gpu_type=request.gpu_type,
                always_run=job.always_run,
                n_max_attempts=job.n_max_attempts,
                spec=spec,
                attributes=attributes,
                in_update_parents=inside,
                earlier_parents=earlier,
                job_group_id=job.absolute_job_group_id or 0,  # the Hail layer resolves in-update ids
                ready_parents=ready,
            )
        )
    cycle = find_cycle(in_update_graph) if in_update_graph else None
    if cycle:
        path = " -> ".join(str(j) for j in cycle)
        raise InvalidInput(
            f"{field}.in_update_parent_ids: the jobs form a cycle ({path}); a job cannot depend on its own "
            "descendants",
            field=f"{field}.in_update_parent_ids",
        )
    return rows
