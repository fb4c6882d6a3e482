"""Result checking and the streaming, incremental merge on real files (no server)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from corral.sweeps import merge
from corral.sweeps.check import ResultProblem, checked_rows
from corral.sweeps.spec import parse_schema

PARAMS = pa.table({"a": [1, 2, 3], "b": ["x", "y", "z"]})
SCHEMA = parse_schema({"y": "float64"})


def write(path: Path, table: pa.Table) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path)
    return path.as_uri()


def test_a_valid_result_joins_its_parameters_and_chunk(tmp_path: Path) -> None:
    url = write(tmp_path / "r.parquet", pa.table({"y": [0.5, 1.5, 2.5]}))
    rows, _ = checked_rows(url, "parquet", PARAMS, 7, SCHEMA, False)
    assert rows.to_pylist() == [
        {"chunk": 7, "a": 1, "b": "x", "y": 0.5}, {"chunk": 7, "a": 2, "b": "y", "y": 1.5},
        {"chunk": 7, "a": 3, "b": "z", "y": 2.5}]


def test_row_numbers_join_several_result_rows_per_parameter_row(tmp_path: Path) -> None:
    url = write(tmp_path / "r.parquet", pa.table({"_row": [2, 2, 0], "y": [1.0, 2.0, 3.0]}))
    rows, _ = checked_rows(url, "parquet", PARAMS, 0, SCHEMA, False)
    assert [(r["a"], r["y"]) for r in rows.to_pylist()] == [(3, 1.0), (3, 2.0), (1, 3.0)]


@pytest.mark.parametrize(
    ("result", "words"),
    [
        (pa.table({"z": [1.0, 2.0, 3.0]}), "no column 'y'"),
        (pa.table({"y": ["a", "b", "c"]}), "column 'y' is string, expected double"),
        (pa.table({"y": [1.0, 2.0]}), "2 rows for 3 parameter rows"),
        (pa.table({"y": [1.0, 2.0, 3.0], "extra": [1, 2, 3]}), "unexpected column 'extra'"),
        (pa.table({"_row": [0, 1, 5], "y": [1.0, 2.0, 3.0]}), "outside 0..2"),
    ],
)
def test_a_wrong_result_is_a_problem_naming_the_column(tmp_path: Path, result: pa.Table, words: str) -> None:
    url = write(tmp_path / "r.parquet", result)
    with pytest.raises(ResultProblem) as err:
        checked_rows(url, "parquet", PARAMS, 4, SCHEMA, False)
    assert words in err.value.message and "chunk 4" in err.value.message


def test_missing_and_corrupt_results_are_problems(tmp_path: Path) -> None:
    with pytest.raises(ResultProblem, match="no result file"):
        checked_rows((tmp_path / "none.parquet").as_uri(), "parquet", PARAMS, 0, SCHEMA, False)
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ResultProblem, match="not readable parquet"):
        checked_rows(bad.as_uri(), "parquet", PARAMS, 0, SCHEMA, False)


def test_csv_and_jsonl_results_are_read_and_widened(tmp_path: Path) -> None:
    csv = tmp_path / "r.csv"
    pacsv.write_csv(pa.table({"y": [1, 2, 3]}), csv)  # integers widen to the expected float64
    rows, _ = checked_rows(csv.as_uri(), "csv", PARAMS, 0, SCHEMA, False)
    assert rows.column("y").type == pa.float64()
    jsonl = tmp_path / "r.jsonl"
    jsonl.write_text("".join(json.dumps({"y": v}) + "\n" for v in (1.5, 2.5, 3.5)))
    rows, _ = checked_rows(jsonl.as_uri(), "jsonl", PARAMS, 0, SCHEMA, False)
    assert rows.column("y").to_pylist() == [1.5, 2.5, 3.5]


def pending(tmp_path: Path, index: int, y: list[float] | list[str]) -> merge.PendingChunk:
    url = write(tmp_path / "results" / f"{index}.parquet", pa.table({"y": y}))
    return merge.PendingChunk(index, f"k{index}", url, lambda: PARAMS)


def test_merging_is_incremental_and_never_twice(tmp_path: Path) -> None:
    out = (tmp_path / "merged").as_uri()
    first = merge.merge_chunks(out, [pending(tmp_path, i, [1.0, 2.0, 3.0]) for i in range(3)],
                               fmt="parquet", per_row=False, expected=SCHEMA)
    assert first.merged == ["k0", "k1", "k2"] and first.rows == 9
    part = Path(first.part.removeprefix("file://")) if first.part else None
    assert part is not None
    before = part.stat().st_mtime_ns
    again = merge.merge_chunks(out, [pending(tmp_path, i, [1.0, 2.0, 3.0]) for i in range(5)],
                               fmt="parquet", per_row=False, expected=SCHEMA)
    assert again.merged == ["k3", "k4"]  # the first three are in a part already
    assert part.stat().st_mtime_ns == before  # and that part was not rewritten
    assert sorted(merge.merged_state(out).chunks) == ["k0", "k1", "k2", "k3", "k4"]
    table = ds.dataset(out.removeprefix("file://"), format="parquet").to_table()
    assert sorted(table.column("chunk").to_pylist()) == sorted([i for i in range(5) for _ in range(3)])


def test_a_bad_chunk_is_reported_and_the_others_merge(tmp_path: Path) -> None:
    out = (tmp_path / "merged").as_uri()
    chunks = [pending(tmp_path, 0, [1.0, 2.0, 3.0]), pending(tmp_path, 1, ["a", "b", "c"]),
              pending(tmp_path, 2, [1.0, 2.0, 3.0])]
    report = merge.merge_chunks(out, chunks, fmt="parquet", per_row=False, expected=None)
    assert report.merged == ["k0", "k2"]
    assert "column 'y' is string, expected double" in report.problems["k1"]


def test_export_streams_the_merged_rows_to_one_file(tmp_path: Path) -> None:
    out = (tmp_path / "merged").as_uri()
    merge.merge_chunks(out, [pending(tmp_path, i, [1.0, 2.0, 3.0]) for i in range(4)],
                       fmt="parquet", per_row=False, expected=SCHEMA)
    assert merge.export(out, (tmp_path / "all.csv").as_uri(), "csv") == 12
    lines = (tmp_path / "all.csv").read_text().splitlines()
    assert lines[0] == '"chunk","a","b","y"' and len(lines) == 13
    assert merge.export(out, (tmp_path / "all.parquet").as_uri(), "parquet") == 12
    assert pq.read_table(tmp_path / "all.parquet").num_rows == 12


def test_a_crash_before_publishing_merges_nothing(tmp_path: Path) -> None:
    out = tmp_path / "merged"
    out.mkdir()
    (out / ".part-x.parquet.tmp").write_bytes(b"half a part")  # what a killed merge leaves
    assert merge.merged_state(out.as_uri()).chunks == {}
    report = merge.merge_chunks(out.as_uri(), [pending(tmp_path, 0, [1.0, 2.0, 3.0])], fmt="parquet",
                                per_row=False, expected=SCHEMA)
    assert report.merged == ["k0"]
    assert ds.dataset(str(out), format="parquet").to_table().num_rows == 3


def test_tables_are_read_from_parquet_csv_tsv_and_jsonl_files(tmp_path: Path) -> None:
    from corral.sweeps.table import load_table

    table = pa.table({"alpha": [0.1, 0.2], "name": ["x", "y"]})
    pq.write_table(table, tmp_path / "p.parquet")
    pacsv.write_csv(table, tmp_path / "p.csv")
    (tmp_path / "p.tsv").write_text("alpha\tname\n0.1\tx\n0.2\ty\n")
    (tmp_path / "p.jsonl").write_text('{"alpha": 0.1, "name": "x"}\n{"alpha": 0.2, "name": "y"}\n')
    for name in ("p.parquet", "p.csv", "p.tsv", "p.jsonl"):
        assert load_table(str(tmp_path / name)).to_pylist() == table.to_pylist(), name
    assert load_table((tmp_path / "p.csv").as_uri()).num_rows == 2


def test_the_servers_bucket_url_is_its_home_folder(tmp_path: Path) -> None:
    from corral.sweeps.storage import normalise_url

    assert normalise_url("gs://corral-local/sweeps", tmp_path) == (
        tmp_path.resolve() / "buckets" / "corral-local").as_uri() + "/sweeps"
    assert normalise_url("relative/dir", tmp_path).startswith("file:///")
    assert normalise_url("s3://bucket/x/", tmp_path) == "s3://bucket/x"


def test_two_processes_merging_at_once_merge_each_chunk_once(tmp_path: Path) -> None:
    import subprocess
    import sys

    for i in range(40):
        write(tmp_path / "results" / f"{i}.parquet", pa.table({"y": [1.0, 2.0, 3.0]}))
    script = (
        "import sys, time, pyarrow as pa\n"
        "from pathlib import Path\n"
        "from corral.sweeps import merge\n"
        "from corral.sweeps.spec import parse_schema\n"
        "root = Path(sys.argv[1])\n"
        "params = pa.table({'a': [1, 2, 3], 'b': ['x', 'y', 'z']})\n"
        "pending = [merge.PendingChunk(i, f'k{i}', (root / 'results' / f'{i}.parquet').as_uri(),"
        " lambda: (time.sleep(0.05), params)[1])"  # slow enough for the three merges to overlap
        " for i in range(40)]\n"
        "merge.merge_chunks((root / 'merged').as_uri(), pending, fmt='parquet', per_row=False,"
        " expected=parse_schema({'y': 'float64'}))\n"
    )
    procs = [subprocess.Popen([sys.executable, "-c", script, str(tmp_path)]) for _ in range(3)]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    table = ds.dataset(str(tmp_path / "merged"), format="parquet").to_table()
    assert sorted(table.column("chunk").to_pylist()) == sorted(i for i in range(40) for _ in range(3))
