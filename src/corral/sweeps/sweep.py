"""`corral.Sweep`: a table of parameters in, one dataset of results out, resumable after any failure.

s = corral.Sweep("garch", table="params.parquet", chunk_size=100,
                 command="python fit.py --in {chunk} --out {result}", cpu=1)
s.run()              # submits only chunks without a valid result; progress bar by chunks
s.status()           # counts and failures (rows, error, log)
s.results()          # the merged pyarrow Table (chunk, parameter columns, result columns)

State lives in the results storage (chunk files, merged parts) and in the server's batches (tagged
with the sweep's name): nothing else, so a killed client, server or worker loses nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, Unpack

import pyarrow as pa
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from corral.client.backends import Backend, LocalBackend
from corral.config import default_home
from corral.errors import NotFound
from corral.sweeps import merge, storage, submit
from corral.sweeps.params import ParamsFile, write_params
from corral.sweeps.progress import ChunkFailure, SweepStatus
from corral.sweeps.spec import (
    Chunk,
    SpecOptions,
    SweepSpec,
    build_spec,
    check_option_names,
    from_manifest,
    to_manifest,
)
from corral.sweeps.storage import SweepLayout
from corral.sweeps.table import TableSource


def default_storage(backend: Backend) -> str:
    """The server's `corral-local` bucket: HOME/buckets/corral-local/sweeps."""
    home = getattr(backend, "home", None)
    return storage.local_bucket_url(Path(home) if home else default_home()) + "/sweeps"


class Sweep:
    """A parameter sweep; see the module docstring. Every argument is checked before anything runs."""

    def __init__(
        self,
        name: str,
        table: TableSource,
        command: str | Callable[..., Any],
        *,
        results_url: str | None = None,
        backend: Backend | None = None,
        billing_project: str | None = None,
        **options: Unpack[SpecOptions],
    ) -> None:
        """options (see `SpecOptions`): chunk_size=100, image, cpu, memory, storage, gpus=0, pool, timeout,
        n_max_attempts=3, result_format="parquet", schema, env."""
        check_option_names(options, "Sweep")
        spec = build_spec(name, table, command, **options)
        self._init(spec, spec.chunks(), backend, results_url, billing_project)

    def _init(self, spec: SweepSpec, chunks: list[Chunk], backend: Backend | None, results_url: str | None,
              billing_project: str | None) -> None:
        self.spec = spec
        self.chunks = chunks
        self._backend = backend
        self._billing_project = billing_project
        self._results_url = results_url
        self.version = spec.version(chunks)
        self._by_key = {c.key: c for c in chunks}
        self._batches: list[int] = []
        self._params_file: ParamsFile | None = None

    @classmethod
    def load(cls, name: str, *, backend: Backend | None = None, results_url: str | None = None,
             billing_project: str | None = None) -> Sweep:
        """The newest version of a sweep that ran before, read back from its storage (for the CLI)."""
        sweep = cls.__new__(cls)
        sweep._backend = backend
        root = results_url and storage.normalise_url(results_url, _home(sweep.backend))
        if root is None:
            found = submit.sweep_batches(sweep.backend.client(), name)
            attributes: Any = found[0]["attributes"] if found else {}
            root = attributes.get(submit.ATTR_STORAGE) or default_storage(sweep.backend)
        layout = SweepLayout(root, name)
        if not storage.exists(layout.current):
            raise NotFound(f"name: no sweep {name!r} under {root}", field="name")
        version = storage.read_json(layout.current)["version"]
        spec, chunks = from_manifest(storage.read_json(layout.version(version)))
        sweep._init(spec, chunks, backend, root, billing_project)
        return sweep

    # ---- where things are

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def backend(self) -> Backend:
        if self._backend is None:
            self._backend = LocalBackend()
        return self._backend

    @property
    def layout(self) -> SweepLayout:
        root = self._results_url
        root = storage.normalise_url(root, _home(self.backend)) if root else default_storage(self.backend)
        return SweepLayout(root, self.spec.name)

    @property
    def merged_dir(self) -> str:
        return self.layout.merged(self.version)

    def _params(self, chunk: Chunk) -> pa.Table:
        if chunk.rows is not None:
            return chunk.rows
        if self._params_file is None:
            self._params_file = ParamsFile(self.layout.params(self.version), len(self.chunks))
        found = self._params_file.read(chunk.index)
        if found is not None:
            return found
        table = submit.read_params(self.layout, chunk)  # written by an older version of Corral
        assert isinstance(table, pa.Table)
        return table

    def _pending(self, chunks: Iterable[Chunk]) -> list[merge.PendingChunk]:
        layout = self.layout
        return [merge.PendingChunk(c.index, c.key, submit.result_url(self.spec, layout, c),
                                   functools.partial(self._params, c)) for c in chunks]

    def _merge(self, chunks: Iterable[Chunk]) -> merge.MergeReport:
        return merge.merge_chunks(self.merged_dir, self._pending(chunks), fmt=self.spec.result_format,
                                  per_row=self.spec.command.per_row, expected=self.spec.schema)

    def _publish_manifest(self) -> None:
        layout = self.layout
        if not storage.exists(layout.version(self.version)):
            if self.spec.table is not None:
                write_params(layout.params(self.version), self.spec.table, self.spec.chunk_size)
            manifest = to_manifest(self.spec, self.chunks, self.version)
            storage.write_json(layout.version(self.version), manifest)
        storage.write_json(layout.current, {"version": self.version})

    # ---- running

    def run(self, wait: bool = True, progress: bool = True, timeout: float | None = None,
            *, only: Iterable[str] | None = None, console: Console | None = None) -> SweepStatus:
        """Submit every chunk without a valid result (and not already running), then by default wait,
        merging results as they come and resubmitting failed chunks up to n_max_attempts."""
        from corral.sweeps.runner import SweepRun

        self._publish_manifest()
        keys = set(only) if only is not None else None
        chunks = [c for c in self.chunks if keys is None or c.key in keys]
        runner = SweepRun(self, chunks)
        runner.start()
        if wait:
            console = console or Console(stderr=True)
            bar = Progress(SpinnerColumn(), TextColumn(f"sweep {self.name}"), BarColumn(),
                           MofNCompleteColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                           console=console, disable=not (progress and console.is_terminal))
            with bar:
                task = bar.add_task("chunks", total=len(chunks))
                runner.wait(timeout, lambda done, desc: bar.update(task, completed=done, description=desc))
        self._batches = runner.batches
        return self.status()

    def retry(self, *, failed: bool = True, wait: bool = True, progress: bool = True,
              timeout: float | None = None) -> SweepStatus:
        """Run again the chunks whose last job failed or whose result is invalid (failed=True), or every
        chunk without a valid result (failed=False, the same as run())."""
        if not failed:
            return self.run(wait=wait, progress=progress, timeout=timeout)
        keys = [f.key for f in self.status().failures]
        if not keys:
            return self.status()
        return self.run(wait=wait, progress=progress, timeout=timeout, only=keys)

    # ---- reading

    def status(self) -> SweepStatus:
        """Counts by chunk state, derived from the storage and the server's batches of this sweep."""
        layout = self.layout
        state = merge.merged_state(self.merged_dir)
        client = self.backend.client()
        batches = submit.sweep_batches(client, self.name)
        newest = submit.newest_jobs(client, [int(str(b["id"])) for b in batches])
        out = SweepStatus(self.name, self.version, layout.base, self.merged_dir, len(self.chunks),
                          sum(c.n_rows for c in self.chunks), batches=[int(str(b["id"])) for b in batches])
        unmerged = [c for c in self.chunks if c.key not in state.chunks]
        existing = submit.chunk_files(layout) if unmerged else set()
        out.merged = len(self.chunks) - len(unmerged)
        out.merged_rows = _merged_rows(self.merged_dir)
        for chunk in unmerged:
            job = newest.get(chunk.key)
            if job is not None and job.live:
                out.running += 1
            elif job is not None and job.state != "Success":
                out.failed += 1
                out.failures.append(self._job_failure(chunk, job))
            elif job is not None or self._result_name(chunk) in existing:
                problem = self._check(chunk)
                if problem is None:
                    out.unmerged += 1
                else:
                    out.failed += 1
                    out.failures.append(ChunkFailure(
                        chunk.index, chunk.key, _rows(chunk), problem,
                        job.batch_id if job else None, job.job_id if job else None,
                        job.n_jobs if job else 0))
            else:
                out.waiting += 1
        return out

    def _check(self, chunk: Chunk) -> str | None:
        from corral.sweeps.check import ResultProblem, checked_rows

        expected = self.spec.schema or merge.merged_state(self.merged_dir).result_schema
        try:
            checked_rows(submit.result_url(self.spec, self.layout, chunk), self.spec.result_format,
                         self._params(chunk), chunk.index, expected, self.spec.command.per_row)
        except ResultProblem as exc:
            return exc.message
        return None

    def _job_failure(self, chunk: Chunk, job: submit.ChunkJob) -> ChunkFailure:
        from corral.sweeps.runner import describe_job_failure

        error = describe_job_failure(self.backend.client(), job.batch_id, job.job_id)
        return ChunkFailure(chunk.index, chunk.key, _rows(chunk), error, job.batch_id, job.job_id, job.n_jobs)

    def merge(self) -> merge.MergeReport:
        """Merge every valid result not merged yet (run() does this as chunks complete)."""
        state = merge.merged_state(self.merged_dir)
        existing = submit.chunk_files(self.layout)
        return self._merge([c for c in self.chunks if c.key not in state.chunks
                            and self._result_name(c) in existing])

    def _result_name(self, chunk: Chunk) -> str:
        return submit.result_url(self.spec, self.layout, chunk).rsplit("/", 1)[-1]

    def results(self, *, to: str | None = None, format: str = "parquet") -> Any:
        """The merged dataset as a pyarrow Table; with `to`, streamed into one Parquet/CSV file at that
        path or URL instead, and its URL returned. Merges valid results first."""
        self.merge()
        if to is not None:
            url = storage.normalise_url(to, _home(self.backend))
            merge.export(self.merged_dir, url, format)
            return url
        return merge.read_merged(self.merged_dir)

    def results_path(self) -> str:
        """The merged dataset's directory (Parquet parts): pyarrow.dataset, pandas, polars, DuckDB read it."""
        return self.merged_dir


def _home(backend: Backend) -> Path:
    home = getattr(backend, "home", None)
    return Path(home) if home else default_home()


def _rows(chunk: Chunk) -> str:
    return f"{chunk.start}-{chunk.start + chunk.n_rows - 1}"


def _merged_rows(merged_dir: str) -> int:
    import pyarrow.parquet as pq

    total = 0
    for url in merge.part_urls(merged_dir):
        with storage.open_url(url, "rb") as f:
            total += pq.read_metadata(f).num_rows
    return total

