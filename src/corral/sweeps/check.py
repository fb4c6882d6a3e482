"""Is a chunk done? Its result exists, is readable, has the expected schema and joins to its rows.

`checked_rows` returns the merged rows of one chunk (chunk, parameter columns, result columns) or
raises `ResultProblem` with a message that names the file or the column.
"""

from __future__ import annotations

import json

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from corral.errors import CorralError
from corral.sweeps import storage
from corral.sweeps.table import CHUNK_COLUMN, ROW_COLUMN


class ResultProblem(CorralError):
    """A chunk's result is missing, unreadable, or not the expected shape; the message says which."""


def read_result_file(url: str, fmt: str) -> pa.Table:
    try:
        with storage.open_url(url, "rb") as f:
            if fmt == "parquet":
                return pq.ParquetFile(f).read()  # 5x less overhead than read_table for small files
            if fmt == "csv":
                return pacsv.read_csv(f)
            rows = [json.loads(line) for line in f.read().decode().splitlines() if line.strip()]
            return pa.Table.from_pylist(rows)
    except FileNotFoundError:
        raise ResultProblem(f"no result file at {url}") from None
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise ResultProblem(f"result {url} is not readable {fmt}: {str(exc).splitlines()[0]}") from None


def read_result(url: str, fmt: str, n_rows: int, per_row: bool) -> pa.Table:
    """The result as written (per-row mode: one file per row under url/, tagged with its _row)."""
    if not per_row:
        return read_result_file(url, fmt)
    parts = []
    for i in range(n_rows):
        part = read_result_file(f"{url}/{i}.{fmt}", fmt)
        if ROW_COLUMN in part.column_names:
            part = part.drop_columns([ROW_COLUMN])
        parts.append(part.append_column(ROW_COLUMN, pa.array([i] * part.num_rows, pa.int64())))
    try:
        return pa.concat_tables(parts, promote_options="permissive")
    except pa.ArrowException as exc:
        raise ResultProblem(f"the per-row results under {url} disagree on their columns: {exc}") from None


def _castable(found: pa.DataType, wanted: pa.DataType) -> bool:
    """Widening that loses nothing: int32 -> int64, int -> float64, float32 -> float64, null -> any,
    string <-> large_string."""
    if found == wanted or pa.types.is_null(found):
        return True
    if pa.types.is_integer(found) and pa.types.is_integer(wanted):
        return bool(found.bit_width <= wanted.bit_width and
                    (pa.types.is_signed_integer(wanted) or pa.types.is_unsigned_integer(found)))
    if pa.types.is_integer(found) and pa.types.is_floating(wanted):
        return bool(wanted.bit_width == 64)
    if pa.types.is_floating(found) and pa.types.is_floating(wanted):
        return bool(found.bit_width <= wanted.bit_width)
    strings = (pa.types.is_string, pa.types.is_large_string)
    return any(s(found) for s in strings) and any(s(wanted) for s in strings)


def conform(result: pa.Table, expected: pa.Schema, where: str) -> pa.Table:
    """The result's columns cast to `expected`; a missing, mistyped or unexpected column is a problem."""
    names = [n for n in result.column_names if n != ROW_COLUMN]
    for f in expected:
        if f.name not in names:
            raise ResultProblem(f"{where} has no column {f.name!r} (expected {f.type})")
        found = result.schema.field(f.name).type
        if not _castable(found, f.type):
            raise ResultProblem(f"{where}: column {f.name!r} is {found}, expected {f.type}")
    extra = [n for n in names if n not in expected.names]
    if extra:
        raise ResultProblem(
            f"{where} has an unexpected column {extra[0]!r} (expected only {', '.join(expected.names)})"
        )
    columns = [result.column(f.name).cast(f.type) for f in expected]
    out = pa.table(columns, schema=expected)
    if ROW_COLUMN in result.column_names:
        out = out.append_column(ROW_COLUMN, result.column(ROW_COLUMN))
    return out


def result_schema(result: pa.Table, params: pa.Schema) -> pa.Schema:
    """The schema a first result sets when none was given: its columns minus _row and parameters."""
    fields = [f for f in result.schema if f.name != ROW_COLUMN and f.name not in params.names]
    return pa.schema(
        [pa.field(f.name, pa.float64() if pa.types.is_null(f.type) else f.type) for f in fields]
    )


def joined(result: pa.Table, params: pa.Table, chunk_index: int, where: str) -> pa.Table:
    """chunk + parameter columns + result columns, one row per result row."""
    n = params.num_rows
    if ROW_COLUMN in result.column_names:
        rows = result.column(ROW_COLUMN)
        if not pa.types.is_integer(rows.type) or rows.null_count:
            raise ResultProblem(f"{where}: column {ROW_COLUMN!r} must hold whole row numbers")
        bounds = pc.min_max(rows).as_py()  # one call on the array: no per-call scalar conversion
        if len(rows) and (bounds["min"] < 0 or bounds["max"] >= n):
            raise ResultProblem(f"{where}: column {ROW_COLUMN!r} names rows outside 0..{n - 1}")
        index = rows.cast(pa.int64())
        result = result.drop_columns([ROW_COLUMN])
    elif result.num_rows == n:
        index = pa.array(range(n), pa.int64())
    else:
        raise ResultProblem(
            f"{where} has {result.num_rows} rows for {n} parameter rows and no {ROW_COLUMN!r} column to "
            "join them on; write one result row per input row, in order, or copy the _row column"
        )
    overlap = [c for c in result.column_names if c in params.column_names]
    if overlap:
        result = result.drop_columns(overlap)  # the parameters come from the chunk, not the job's copy
    out = pa.table({CHUNK_COLUMN: pa.array([chunk_index] * result.num_rows, pa.int64())})
    taken = params.take(index)
    for name in params.column_names:
        out = out.append_column(params.schema.field(name), taken.column(name))
    for name in result.column_names:
        out = out.append_column(result.schema.field(name), result.column(name))
    return out


def checked_rows(
    url: str, fmt: str, params: pa.Table, chunk_index: int, expected: pa.Schema | None, per_row: bool
) -> tuple[pa.Table, pa.Schema]:
    """The chunk's merged rows and the result schema they were checked against."""
    where = f"the result of chunk {chunk_index}"
    result = read_result(url, fmt, params.num_rows, per_row)
    if expected is None:
        expected = result_schema(result, params.schema)
        if not expected.names:
            raise ResultProblem(f"{where} has no result columns besides the parameters")
    overlap = [c for c in result.column_names if c in params.column_names and c not in expected.names]
    if overlap:
        result = result.drop_columns(overlap)
    return joined(conform(result, expected, where), params, chunk_index, where), expected
