"""Chunks as jobs: wire job specs through the public client, batches tagged with the sweep, and what
the server knows about a sweep's jobs (live chunks, latest outcome per chunk), read back from it."""

from __future__ import annotations

import dataclasses
import functools
import os
import secrets
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow.parquet as pq
from fsspec.implementations.local import LocalFileSystem  # type: ignore[import-untyped]

from corral.api.schemas import (
    BatchSpec,
    EnvVar,
    FileTransfer,
    JobSpec,
    JobSummary,
    ProcessSpec,
    ResourcesSpec,
)
from corral.client.compile import SHELL
from corral.client.submit import submit_new_batch
from corral.client.sync import SyncClient
from corral.sweeps import storage
from corral.sweeps.command import CHUNK_PATH, FUNCTION_DIR, FunctionCommand
from corral.sweeps.spec import Chunk, SweepSpec
from corral.sweeps.storage import SweepLayout

ATTR_SWEEP = "sweep"
ATTR_VERSION = "sweep_version"
ATTR_STORAGE = "sweep_storage"
JOB_PREFIX = "chunk-"
LIVE_STATES = ("Pending", "Ready", "Creating", "Running")


def job_name(chunk: Chunk) -> str:
    return f"{JOB_PREFIX}{chunk.index}-{chunk.key}"


def chunk_key_of(name: str | None) -> str | None:
    if not name or not name.startswith(JOB_PREFIX):
        return None
    return name.rsplit("-", 1)[-1]


def _transfer(src: str, dst: str) -> FileTransfer:
    return FileTransfer.model_validate({"from": src, "to": dst})


def job_spec(spec: SweepSpec, layout: SweepLayout, chunk: Chunk, job_id: int,
             rows: Callable[[], list[dict[str, object]]]) -> JobSpec:
    command = spec.command
    fmt = spec.result_format
    script = command.script(rows() if command.per_row else [], fmt)
    inputs = [_transfer(layout.chunk_input(chunk.key), CHUNK_PATH)]
    env = dict(spec.env)
    if isinstance(command, FunctionCommand):
        if command.source_file:
            inputs.append(_transfer(storage.normalise_url(command.source_file),
                                    f"{FUNCTION_DIR}/{command.module}.py"))
        env.setdefault("PYTHONPATH", os.pathsep.join(p for p in sys.path if p and os.path.isdir(p)))
    result_io = "/io/result" if command.per_row else f"/io/result.{fmt}"
    result_url = layout.chunk_result(chunk.key, None if command.per_row else fmt)
    extra = {"pool": spec.pool} if spec.pool else {}
    return JobSpec(
        job_id=job_id,
        name=job_name(chunk),
        process=ProcessSpec(type="docker", image=spec.image, command=[SHELL, "-c", f"set -e\n{script}"]),
        resources=ResourcesSpec(cpu=spec.cpu, memory=spec.memory, storage=spec.storage_request,
                                gpus=spec.gpus),
        env=[EnvVar(name=k, value=v) for k, v in env.items()],
        timeout=spec.timeout,
        n_max_attempts=spec.n_max_attempts,
        attributes={"name": job_name(chunk), "chunk": str(chunk.index), "chunk_key": chunk.key,
                    ATTR_SWEEP: spec.name},
        input_files=inputs,
        output_files=[_transfer(result_io, result_url)],
        **extra,
    )


def result_url(spec: SweepSpec, layout: SweepLayout, chunk: Chunk) -> str:
    return layout.chunk_result(chunk.key, None if spec.command.per_row else spec.result_format)


def chunk_files(layout: SweepLayout) -> set[str]:
    """Names in the chunks folder (one listing instead of a look-up per chunk)."""
    return set(storage.list_names(layout.chunks))


def write_inputs(layout: SweepLayout, chunks: Sequence[Chunk], existing: set[str]) -> None:
    """Each chunk's rows as Parquet, published whole (content-addressed: written once, whatever the
    version). Written by a few threads: pyarrow releases the GIL while it encodes and writes."""
    fs, folder = storage.filesystem(layout.chunks)
    fs.makedirs(folder, exist_ok=True)
    local = isinstance(fs, LocalFileSystem)

    def write(chunk: Chunk) -> None:
        final = f"{folder}/{chunk.key}.input.parquet"
        tmp = f"{folder}/.{chunk.key}.{secrets.token_hex(4)}.tmp"
        if local:
            pq.write_table(chunk.input_table(), tmp)
            os.replace(tmp, final)
        else:
            with fs.open(tmp, "wb") as f:
                pq.write_table(chunk.input_table(), f)
            fs.mv(tmp, final)

    todo = [c for c in chunks if f"{c.key}.input.parquet" not in existing]
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="sweep-inputs") as pool:
        list(pool.map(write, todo))


def read_params(layout: SweepLayout, chunk: Chunk) -> object:
    with storage.open_url(layout.chunk_input(chunk.key), "rb") as f:
        table = pq.ParquetFile(f).read()
    return table.drop_columns(["_row"]) if "_row" in table.column_names else table


def submit_chunks(client: SyncClient, spec: SweepSpec, layout: SweepLayout, version: str,
                  chunks: Sequence[Chunk], billing_project: str,
                  rows_of: Callable[[Chunk], list[dict[str, object]]]) -> int:
    """One batch with a job per chunk; returns its id."""
    jobs = [job_spec(spec, layout, c, i + 1, functools.partial(rows_of, c)) for i, c in enumerate(chunks)]
    batch = BatchSpec(
        billing_project=billing_project,
        token=secrets.token_hex(16),
        attributes={"name": f"sweep {spec.name}", ATTR_SWEEP: spec.name, ATTR_VERSION: version,
                    ATTR_STORAGE: layout.root},
    )
    return client.run(submit_new_batch(client.aio, batch, jobs)).batch_id


@dataclass(frozen=True)
class ChunkJob:
    """The newest job the server has for a chunk."""

    batch_id: int
    job_id: int
    state: str
    exit_code: int | None
    n_jobs: int = 1  # jobs the chunk had over the batches looked at

    @property
    def live(self) -> bool:
        return self.state in LIVE_STATES


def sweep_batches(client: SyncClient, name: str, *, live_only: bool = False) -> list[dict[str, object]]:
    """Batches of the sweep, newest first."""
    q = f"{ATTR_SWEEP}={name}" + (" !complete !cancelled" if live_only else "")
    out: list[dict[str, object]] = []
    last: int | None = None
    while True:
        page = client.list_batches(q=q, last_batch_id=last, limit=1000)
        out += [b.model_dump() for b in page.batches]
        if page.last_batch_id is None:
            return out
        last = page.last_batch_id


def iter_chunk_jobs(client: SyncClient, batch_id: int, state: str | None = None) -> Iterator[
        tuple[str, JobSummary]]:
    for job in client.iter_jobs(batch_id, state=state, page_size=1000):
        key = chunk_key_of(job.name)
        if key is not None:
            yield key, job


def newest_jobs(client: SyncClient, batch_ids: Sequence[int]) -> dict[str, ChunkJob]:
    """chunk key -> its newest job over the given batches (newest batch first wins)."""
    found: dict[str, ChunkJob] = {}
    counts: dict[str, int] = {}
    for batch_id in batch_ids:
        for key, job in iter_chunk_jobs(client, batch_id):
            counts[key] = counts.get(key, 0) + 1
            if key not in found:
                found[key] = ChunkJob(batch_id, job.job_id, job.state, job.exit_code)
    return {k: dataclasses.replace(j, n_jobs=counts[k]) for k, j in found.items()}
