"""Runs inside a sweep's job: `python -m corral.sweeps.pyjob MODULE:NAME CHUNK RESULT FUNCTION_DIR`.

Reads the chunk (Parquet), calls the function with it as a pyarrow Table, writes what it returns
(a pyarrow Table, a pandas/polars DataFrame, a dict of columns or a list of row dicts) to RESULT.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any


def as_table(value: Any) -> Any:
    import pyarrow as pa

    if isinstance(value, pa.Table):
        return value
    if hasattr(value, "to_arrow"):  # polars
        return value.to_arrow()
    if type(value).__module__.startswith("pandas"):
        return pa.Table.from_pandas(value, preserve_index=False)
    if isinstance(value, dict):
        return pa.table(value)
    if isinstance(value, list):
        return pa.Table.from_pylist(value)
    raise TypeError(
        f"the sweep function returned {type(value).__name__}; return a pyarrow Table, a DataFrame, "
        "a dict of columns or a list of row dicts"
    )


def write_result(table: Any, path: str) -> None:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if path.endswith(".parquet"):
        pq.write_table(table, path)
    elif path.endswith(".csv"):
        pacsv.write_csv(table, path)
    else:
        import json

        with open(path, "w") as f:
            for row in table.to_pylist():
                f.write(json.dumps(row, default=str) + "\n")


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print("usage: python -m corral.sweeps.pyjob MODULE:NAME CHUNK RESULT FUNCTION_DIR", file=sys.stderr)
        return 2
    target, chunk, result, function_dir = argv
    import pyarrow.parquet as pq

    sys.path.insert(0, function_dir)
    module_name, _, qualname = target.partition(":")
    fn: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        fn = getattr(fn, part)
    table = pq.read_table(chunk)
    write_result(as_table(fn(table)), result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
