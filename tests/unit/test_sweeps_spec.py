"""Sweep specs: tables, chunking, deterministic keys, command templates, and bad specs refused early."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from corral.errors import InvalidInput
from corral.sweeps.command import parse_template
from corral.sweeps.spec import build_spec, from_manifest, parse_schema, to_manifest
from corral.sweeps.table import grid

CMD = "fit --in {chunk} --out {result}"


def test_grid_is_the_cartesian_product_last_axis_fastest() -> None:
    t = grid({"a": [1, 2], "b": ["x", "y", "z"]})
    assert t.num_rows == 6
    assert t.to_pylist()[:4] == [
        {"a": 1, "b": "x"}, {"a": 1, "b": "y"}, {"a": 1, "b": "z"}, {"a": 2, "b": "x"}]


def test_chunks_cover_every_row_once_with_stable_keys() -> None:
    spec = build_spec("s", {"a": list(range(250))}, CMD, chunk_size=100)
    chunks = spec.chunks()
    assert [(c.index, c.start, c.n_rows) for c in chunks] == [(0, 0, 100), (1, 100, 100), (2, 200, 50)]
    again = build_spec("s", {"a": list(range(250))}, CMD, chunk_size=100).chunks()
    assert [c.key for c in chunks] == [c.key for c in again]
    assert len({c.key for c in chunks}) == 3
    assert spec.version(chunks) == spec.version(again)


def test_a_changed_table_changes_only_the_changed_chunks() -> None:
    rows = list(range(300))
    before = build_spec("s", {"a": rows}, CMD, chunk_size=100).chunks()
    changed = rows.copy()
    changed[150] = -1
    after = build_spec("s", {"a": changed}, CMD, chunk_size=100).chunks()
    assert [b.key == a.key for b, a in zip(before, after, strict=True)] == [True, False, True]


def test_command_image_and_schema_are_part_of_every_chunk_key() -> None:
    base = build_spec("s", {"a": [1, 2]}, CMD).chunks()[0].key
    assert build_spec("s", {"a": [1, 2]}, CMD + " -v").chunks()[0].key != base
    assert build_spec("s", {"a": [1, 2]}, CMD, image="img:2").chunks()[0].key != base
    assert build_spec("s", {"a": [1, 2]}, CMD, schema={"y": "float64"}).chunks()[0].key != base
    assert build_spec("s", {"a": [1, 2]}, CMD, cpu=2).chunks()[0].key == base  # resources change nothing


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"command": "fit --alpha {alpah} --out {result}"}, "command", "{alpah} is not a column"),
        ({"command": "fit --in {chunk}"}, "command", "{result}"),
        ({"command": "echo ${HOME} {chunk} {result}"}, "command", "{HOME} is not a column"),
        ({"table": {"a": []}}, "table", "no rows"),
        ({"table": pa.table({"a": pa.array([], pa.int64())})}, "table", "no rows"),
        ({"chunk_size": 0}, "chunk_size", "at least 1"),
        ({"chunk_size": -5}, "chunk_size", "at least 1"),
        ({"n_max_attempts": 0}, "n_max_attempts", "from 1"),
        ({"name": "bad name"}, "name", "not a sweep name"),
        ({"table": {"_row": [1]}}, "table", "reserved"),
        ({"cpu": "lots"}, "cpu", "not a cpu count"),
        ({"schema": {"y": "floaty"}}, "schema", "unknown type"),
        ({"table": "/nonexistent/params.parquet"}, "table", "does not exist"),
        ({"table": 42}, "table", "not a table"),
        ({"result_format": "xlsx"}, "result_format", "parquet"),
    ],
)
def test_bad_specs_are_refused_naming_the_field(kwargs: dict[str, object], field: str, words: str) -> None:
    args: dict[str, object] = {"name": "s", "table": {"a": [1, 2]}, "command": CMD, **kwargs}
    with pytest.raises(InvalidInput) as err:
        build_spec(**args)  # type: ignore[arg-type]
    assert err.value.field == field
    assert words in err.value.message


def test_column_placeholders_run_the_command_once_per_row_with_quoted_values() -> None:
    template = parse_template("fit --a {a} --b {b} --out {result}", ["a", "b"])
    assert template.per_row and template.columns == ("a", "b")
    script = template.script([{"a": 1, "b": "x y"}, {"a": 2, "b": "it's"}], "parquet")
    assert "fit --a 1 --b 'x y' --out /io/result/0.parquet" in script
    assert "fit --a 2 --b 'it'\"'\"'s' --out /io/result/1.parquet" in script


def test_literal_braces_are_doubled() -> None:
    template = parse_template("echo ${{HOME}} {chunk} > {result}", ["a"])
    assert template.script([], "csv") == "echo ${HOME} /io/chunk.parquet > /io/result.csv"


def test_schema_from_names_and_the_manifest_round_trip() -> None:
    schema = parse_schema({"y": "float64", "ok": "bool"})
    assert schema is not None and schema.field("y").type == pa.float64()
    spec = build_spec("s", {"a": list(range(10))}, CMD, chunk_size=3, schema={"y": "float64"}, cpu=1)
    chunks = spec.chunks()
    back, back_chunks = from_manifest(to_manifest(spec, chunks, spec.version(chunks)))
    assert back.recipe == spec.recipe
    assert [(c.index, c.key, c.start, c.n_rows) for c in back_chunks] == [
        (c.index, c.key, c.start, c.n_rows) for c in chunks]
    assert back.version(back_chunks) == spec.version(chunks)


def test_a_misspelt_option_is_a_type_error_with_a_suggestion() -> None:
    import corral

    with pytest.raises(TypeError, match=r"keyword argument 'chunk_sise'; did you mean 'chunk_size'"):
        corral.Sweep("s", {"a": [1, 2]}, CMD, chunk_sise=3)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match=r"build_spec\(\) got an unexpected keyword argument 'nope'$"):
        build_spec("s", {"a": [1, 2]}, CMD, nope=1)  # type: ignore[call-arg]


def test_a_service_backend_s_home_is_where_a_sweep_keeps_its_files_by_default(tmp_path: Path) -> None:
    from corral.client.backends import ServiceBackend
    from corral.sweeps.sweep import default_storage

    backend = ServiceBackend("http://127.0.0.1:9", "token", home=tmp_path)
    assert default_storage(backend) == (tmp_path.resolve() / "buckets" / "corral-local" / "sweeps").as_uri()
