"""The merged dataset of a sweep version: Parquet parts, each listing its chunks in its footer.

A merge streams the newly valid chunks one at a time into ONE new part (memory: a chunk plus one row
group), publishes it with a rename, and never rewrites earlier parts. The parts' footers are the only
record of what is merged, so a crash before the rename merges nothing and a crash after it merged
everything in that part: no chunk is ever merged twice. Readers (pyarrow.dataset, pandas, polars,
DuckDB) skip the hidden temporary files.
"""

from __future__ import annotations

import json
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from corral.errors import InvalidInput
from corral.sweeps import storage
from corral.sweeps.check import ResultProblem, checked_rows

CHUNKS_KEY = b"corral.sweep.chunks"
RESULT_COLUMNS_KEY = b"corral.sweep.result_columns"
ROW_GROUP_ROWS = 64 * 1024


@dataclass(frozen=True)
class PendingChunk:
    """A chunk whose result is to be checked and merged."""

    index: int
    key: str
    result_url: str
    params: Callable[[], pa.Table]  # its parameter rows (without _row), read when needed


@dataclass
class MergeReport:
    merged: list[str] = field(default_factory=list)  # keys
    problems: dict[str, str] = field(default_factory=dict)  # key -> what is wrong
    part: str | None = None  # the new part's URL
    rows: int = 0


def part_urls(merged_dir: str) -> list[str]:
    return [f"{merged_dir}/{n}" for n in storage.list_names(merged_dir)
            if n.startswith("part-") and n.endswith(".parquet")]


def _footer(url: str) -> dict[bytes, bytes]:
    with storage.open_url(url, "rb") as f:
        return dict(pq.read_metadata(f).metadata or {})


@dataclass
class MergedState:
    chunks: dict[str, str]  # chunk key -> part URL
    result_schema: pa.Schema | None
    schema: pa.Schema | None  # the whole merged schema


def merged_state(merged_dir: str) -> MergedState:
    chunks: dict[str, str] = {}
    result_schema = schema = None
    for url in part_urls(merged_dir):
        meta = _footer(url)
        for key in json.loads(meta.get(CHUNKS_KEY, b"[]")):
            chunks[key] = url
        if schema is None:
            with storage.open_url(url, "rb") as f:
                schema = pq.read_schema(f)
            names = json.loads(meta.get(RESULT_COLUMNS_KEY, b"[]"))
            result_schema = pa.schema([schema.field(n) for n in names]).remove_metadata()
    return MergedState(chunks, result_schema, schema)


class _PartWriter:
    """A new part written to a hidden temporary file, buffering rows into row groups."""

    def __init__(self, merged_dir: str) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        name = f"part-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
        self.url = f"{merged_dir}/{name}"
        self.tmp_url = f"{merged_dir}/.{name}.tmp"
        fs, path = storage.filesystem(self.tmp_url)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        self._file = fs.open(path, "wb")
        self._writer: pq.ParquetWriter | None = None
        self._buffer: list[pa.Table] = []
        self._buffered = 0
        self.rows = 0

    def write(self, rows: pa.Table) -> None:
        if self._writer is None:
            self._writer = pq.ParquetWriter(self._file, rows.schema, compression="zstd")
        self._buffer.append(rows)
        self._buffered += rows.num_rows
        if self._buffered >= ROW_GROUP_ROWS:
            self._flush()

    def _flush(self) -> None:
        if self._buffer and self._writer is not None:
            self._writer.write_table(pa.concat_tables(self._buffer), row_group_size=max(self._buffered, 1))
            self.rows += self._buffered
        self._buffer, self._buffered = [], 0

    def publish(self, keys: list[str], result_columns: list[str]) -> None:
        self._flush()
        assert self._writer is not None
        self._writer.add_key_value_metadata(
            {CHUNKS_KEY: json.dumps(keys).encode(), RESULT_COLUMNS_KEY: json.dumps(result_columns).encode()}
        )
        self._writer.close()
        self._file.close()
        storage.publish(self.tmp_url, self.url)

    def discard(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._file.close()
        storage.remove(self.tmp_url)


def merge_chunks(
    merged_dir: str,
    pending: Iterable[PendingChunk],
    *,
    fmt: str,
    per_row: bool,
    expected: pa.Schema | None,
) -> MergeReport:
    """Check each pending chunk's result and stream the valid ones into one new part."""
    # One merge at a time per dataset: two processes merging the same chunk would merge it twice.
    with storage.exclusive(merged_dir, ".merge.lock"):
        return _merge_chunks(merged_dir, pending, fmt=fmt, per_row=per_row, expected=expected)


def _merge_chunks(
    merged_dir: str,
    pending: Iterable[PendingChunk],
    *,
    fmt: str,
    per_row: bool,
    expected: pa.Schema | None,
) -> MergeReport:
    report = MergeReport()
    state = merged_state(merged_dir)
    wanted = expected or state.result_schema
    merged_schema = None if state.schema is None else state.schema.remove_metadata()
    # merged before: never twice (and a key given twice is merged once)
    todo = list({c.key: c for c in pending if c.key not in state.chunks}.values())

    def load(chunk: PendingChunk, schema: pa.Schema | None) -> tuple[pa.Table | None, pa.Schema | None, str]:
        try:
            rows, found = checked_rows(chunk.result_url, fmt, chunk.params(), chunk.index, schema, per_row)
            if merged_schema is not None and not rows.schema.equals(merged_schema):
                rows = rows.cast(merged_schema)
            return rows, found, ""
        except ResultProblem as exc:
            return None, None, exc.message
        except pa.ArrowException as exc:
            return None, None, f"the result of chunk {chunk.index} does not fit: {exc}"

    writer: _PartWriter | None = None
    try:
        for chunk, (rows, found, problem) in _loaded(todo, wanted, load):
            if rows is None:
                report.problems[chunk.key] = problem
                continue
            wanted = wanted or found
            if writer is None:
                writer = _PartWriter(merged_dir)
            writer.write(rows)
            report.merged.append(chunk.key)
        if writer is not None:
            assert wanted is not None
            writer.publish(report.merged, list(wanted.names))
            report.part, report.rows = writer.url, writer.rows
            writer = None
    finally:
        if writer is not None:
            writer.discard()
    return report


Loaded = tuple[pa.Table | None, pa.Schema | None, str]
READ_AHEAD = 8  # chunks read in parallel ahead of the writer: memory stays bounded by a few chunks


def _loaded(
    todo: list[PendingChunk], wanted: pa.Schema | None,
    load: Callable[[PendingChunk, pa.Schema | None], Loaded],
) -> Iterator[tuple[PendingChunk, Loaded]]:
    """Each chunk's checked rows, in order, reading ahead in threads (pyarrow releases the GIL)."""
    rest = iter(todo)
    if wanted is None:  # the first valid result sets the schema the others are checked against
        for chunk in rest:
            first = load(chunk, None)
            yield chunk, first
            if first[1] is not None:
                wanted = first[1]
                break
    with ThreadPoolExecutor(max_workers=4, thread_name_prefix="sweep-merge") as pool:
        window: deque[tuple[PendingChunk, Future[Loaded]]] = deque()
        for chunk in rest:
            window.append((chunk, pool.submit(load, chunk, wanted)))
            if len(window) >= READ_AHEAD:
                done, future = window.popleft()
                yield done, future.result()
        while window:
            done, future = window.popleft()
            yield done, future.result()


def iter_batches(merged_dir: str) -> Iterator[pa.RecordBatch]:
    """Every merged row, part by part and row group by row group (memory: one row group)."""
    for url in part_urls(merged_dir):
        with storage.open_url(url, "rb") as f:
            reader = pq.ParquetFile(f)
            for i in range(reader.num_row_groups):
                yield from reader.read_row_group(i).to_batches()


def read_merged(merged_dir: str) -> pa.Table:
    tables = []
    for url in part_urls(merged_dir):
        with storage.open_url(url, "rb") as f:
            tables.append(pq.read_table(f))
    if not tables:
        return pa.table({})
    return pa.concat_tables(tables, promote_options="permissive").replace_schema_metadata(None)


def export(merged_dir: str, to_url: str, fmt: str) -> int:
    """Stream the merged dataset into one Parquet or CSV file at `to_url`; returns the rows written."""
    if fmt not in ("parquet", "csv"):
        raise InvalidInput(f"format: {fmt!r} is not parquet or csv", field="format")
    state = merged_state(merged_dir)
    if state.schema is None:
        raise InvalidInput("the sweep has no merged results yet", field="name")
    schema = state.schema.remove_metadata()
    fs, path = storage.filesystem(to_url)
    parent = path.rsplit("/", 1)[0]
    if parent:
        fs.makedirs(parent, exist_ok=True)
    rows = 0
    with fs.open(path, "wb") as f:
        writer: pq.ParquetWriter | pacsv.CSVWriter = (
            pq.ParquetWriter(f, schema, compression="zstd") if fmt == "parquet"
            else pacsv.CSVWriter(f, schema)
        )
        for batch in iter_batches(merged_dir):
            writer.write_batch(batch.cast(schema) if not batch.schema.equals(schema) else batch)
            rows += batch.num_rows
        writer.close()
    return rows
