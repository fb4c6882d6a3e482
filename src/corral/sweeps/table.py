"""The parameter table of a sweep: read from a Parquet/CSV path or URL, a pandas/polars/pyarrow table,
or a grid dict (the Cartesian product of its value lists), then checked before anything is submitted."""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from corral.errors import InvalidInput
from corral.sweeps.storage import open_url

ROW_COLUMN = "_row"  # the row's position inside its chunk, in every chunk file (the join key)
CHUNK_COLUMN = "chunk"  # the chunk index, in every merged row
RESERVED_COLUMNS = (ROW_COLUMN, CHUNK_COLUMN)

TableSource = Any  # str path/URL | pa.Table | pandas.DataFrame | polars.DataFrame | dict of lists


def grid(axes: Mapping[str, Sequence[Any]]) -> pa.Table:
    """{"alpha": [1, 2], "beta": ["x", "y"]} -> 4 rows, the last axis varying fastest."""
    if not axes:
        raise InvalidInput("table: the grid has no axes; give {column: [values, ...]}", field="table")
    names = [str(n) for n in axes]
    values: list[list[Any]] = []
    for name, axis in axes.items():
        if isinstance(axis, str | bytes) or not isinstance(axis, Sequence | range):
            raise InvalidInput(
                f"table: grid axis {name!r} must be a list of values, not {type(axis).__name__}",
                field="table",
            )
        values.append(list(axis))
    columns: list[list[Any]] = [[] for _ in names]
    for combo in itertools.product(*values):
        for i, v in enumerate(combo):
            columns[i].append(v)
    try:
        return pa.table(dict(zip(names, columns, strict=True)))
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise InvalidInput(f"table: the grid's values do not form columns: {exc}", field="table") from exc


def read_table_file(location: str) -> pa.Table:
    """Parquet (.parquet/.pq), CSV (.csv, .csv.gz) or JSON lines (.jsonl) at a local path or fsspec URL."""
    lower = location.lower()
    try:
        with open_url(location, "rb") as f:
            if lower.endswith((".parquet", ".pq")):
                return pq.read_table(f)
            if lower.endswith((".csv", ".csv.gz", ".tsv")):
                parse = pacsv.ParseOptions(delimiter="\t" if lower.endswith(".tsv") else ",")
                compression = "gzip" if lower.endswith(".gz") else None
                return pacsv.read_csv(pa.input_stream(f, compression=compression), parse_options=parse)
            if lower.endswith((".jsonl", ".ndjson", ".json")):
                import pyarrow.json as pajson

                return pajson.read_json(f)
    except FileNotFoundError:
        raise InvalidInput(f"table: {location} does not exist", field="table") from None
    except (OSError, pa.ArrowException) as exc:
        raise InvalidInput(f"table: cannot read {location}: {exc}", field="table") from exc
    raise InvalidInput(
        f"table: {location} is not a table file; use .parquet, .csv, .tsv or .jsonl", field="table"
    )


def load_table(source: TableSource) -> pa.Table:
    """Any supported table source as a pyarrow Table (pandas and polars are optional: duck-typed)."""
    if isinstance(source, pa.Table):
        table = source
    elif isinstance(source, pa.RecordBatch):
        table = pa.Table.from_batches([source])
    elif isinstance(source, str) or hasattr(source, "__fspath__"):
        table = read_table_file(str(source))
    elif isinstance(source, Mapping):
        table = grid(source)
    elif hasattr(source, "to_arrow"):  # polars.DataFrame
        table = source.to_arrow()
    elif type(source).__module__.startswith("pandas"):
        table = pa.Table.from_pandas(source, preserve_index=False)
    else:
        raise InvalidInput(
            f"table: {type(source).__name__} is not a table; give a Parquet/CSV path or URL, a pandas or "
            "polars DataFrame, a pyarrow Table, or a grid dict {column: [values]}",
            field="table",
        )
    return check_table(table)


def check_table(table: pa.Table) -> pa.Table:
    if table.num_columns == 0:
        raise InvalidInput("table: it has no columns", field="table")
    if table.num_rows == 0:
        raise InvalidInput("table: it has no rows; a sweep needs at least one parameter row", field="table")
    names = table.column_names
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise InvalidInput(f"table: column {duplicates[0]!r} appears more than once", field="table")
    for reserved in RESERVED_COLUMNS:
        if reserved in names:
            raise InvalidInput(
                f"table: column {reserved!r} is reserved by the sweep (row and chunk numbers); rename it",
                field="table",
            )
    return table.combine_chunks()
