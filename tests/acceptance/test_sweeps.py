"""Parameter sweeps end to end: a real `corral server` with real local workers, results on disk."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from tests.acceptance.harness import RunningServer
from tests.acceptance.sweep_helpers import (
    FIT,
    backend_for,
    check_grid_result,
    jobs_per_chunk,
    py_command,
    start_server,
    wait_for,
)

import corral
from corral.errors import InvalidInput
from corral.sweeps import submit

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("sweeps") / "home")
    yield running
    running.stop()


@pytest.fixture(scope="module")
def backend(server: RunningServer) -> Iterator[corral.ServiceBackend]:
    with backend_for(server) as b:
        yield b


def test_a_10000_row_grid_in_100_chunks_merges_every_row_once(
    backend: corral.ServiceBackend, tmp_path: Path
) -> None:
    grid = {"a": list(range(100)), "b": [float(b) for b in range(100)]}
    s = corral.Sweep("grid", grid, py_command(FIT), chunk_size=100, cpu=0.5, backend=backend,
                     schema={"y": "float64"}, results_url=str(tmp_path / "store"))
    status = s.run(progress=False, timeout=600)
    assert status.complete, status.failures
    assert (status.merged, status.merged_rows, status.failed) == (100, 10_000, 0)
    check_grid_result(s.results(), 100, 100, 100)
    assert all(states == ["Success"] for states in jobs_per_chunk(backend, "grid").values())
    # the same sweep again: every chunk has a valid result, nothing is submitted or merged again
    n_batches = len(status.batches)
    again = corral.Sweep("grid", grid, py_command(FIT), chunk_size=100, cpu=0.5, backend=backend,
                         schema={"y": "float64"}, results_url=str(tmp_path / "store")).run(progress=False)
    assert again.complete and len(again.batches) == n_batches and again.merged_rows == 10_000
    # a changed table submits only the changed chunk (a varies slowest: a's last value is the last chunk)
    grid["a"][-1] = 1000
    changed = corral.Sweep("grid", grid, py_command(FIT), chunk_size=100, cpu=0.5, backend=backend,
                           schema={"y": "float64"}, results_url=str(tmp_path / "store"))
    new_status = changed.run(progress=False, timeout=300)
    assert new_status.complete and len(new_status.batches) == n_batches + 1
    newest = max(new_status.batches)
    assert backend.client().get_batch(newest).n_jobs == 1
    assert changed.results().num_rows == 10_000
    assert sorted(set(changed.results().column("a").to_pylist()))[-2:] == [98, 1000]


def test_a_chunk_with_a_wrong_schema_fails_naming_the_column_and_the_others_merge(
    backend: corral.ServiceBackend, tmp_path: Path
) -> None:
    wrong = FIT.replace("pq.write_table(", "import pyarrow as pa\nif t['a'][0].as_py() == 3:\n"
                        "    t = t.set_column(0, 'a', pa.array([str(v) for v in t['a'].to_pylist()]))\n"
                        "    pq.write_table(t.select(['_row']).append_column('y', t['a']), sys.argv[2]); "
                        "sys.exit(0)\npq.write_table(")
    s = corral.Sweep("schema", {"a": list(range(6)), "b": [float(b) for b in range(10)]}, py_command(wrong),
                     chunk_size=10, cpu=0.5, n_max_attempts=2, backend=backend,
                     schema={"y": "float64"}, results_url=str(tmp_path / "store"))
    status = s.run(progress=False, timeout=300)
    assert (status.merged, status.failed) == (5, 1)
    [failure] = status.failures
    assert failure.index == 3 and failure.rows == "30-39" and failure.attempts == 2
    assert "column 'y' is string, expected double" in failure.error
    assert jobs_per_chunk(backend, "schema")[failure.key] == ["Success", "Success"]  # tried n_max_attempts
    merged = s.results()
    assert merged.num_rows == 50 and 3 not in set(merged.column("chunk").to_pylist())


def test_a_corrupt_result_file_is_run_again(backend: corral.ServiceBackend, tmp_path: Path) -> None:
    args = dict(name="corrupt", table={"a": list(range(4)), "b": [1.0, 2.0]}, command=py_command(FIT),
                chunk_size=2, cpu=0.5, backend=backend, results_url=str(tmp_path / "store"))
    s = corral.Sweep(**args)  # type: ignore[arg-type]
    first = s.run(wait=False)
    wait_for("the first batch", lambda: backend.client().get_batch(max(first.batches)).complete)
    victim = s.chunks[2]
    result = Path(submit.result_url(s.spec, s.layout, victim).removeprefix("file://"))
    result.write_bytes(result.read_bytes()[:20])  # truncated, as by a full disk
    status = corral.Sweep(**args).run(progress=False, timeout=300)  # type: ignore[arg-type]
    assert status.complete and status.merged_rows == 8
    runs = jobs_per_chunk(backend, "corrupt")
    assert runs[victim.key] == ["Success", "Success"]
    assert all(len(states) == 1 for key, states in runs.items() if key != victim.key)
    assert pq.read_table(result).num_rows == 2


def test_a_python_function_runs_on_each_chunk(backend: corral.ServiceBackend, tmp_path: Path) -> None:
    from tests.acceptance.sweep_functions import fit

    s = corral.Sweep("function", {"a": list(range(6)), "b": [2.0]}, fit, chunk_size=4, cpu=0.5,
                     backend=backend, results_url=str(tmp_path / "store"))
    status = s.run(progress=False, timeout=300)
    assert status.complete, status.failures
    assert sorted((r["a"], r["y"]) for r in s.results().to_pylist()) == [(a, a * 2.0) for a in range(6)]


def test_column_placeholders_run_once_per_row(backend: corral.ServiceBackend, tmp_path: Path) -> None:
    code = ("import sys, pyarrow as pa, pyarrow.parquet as pq; "
            "pq.write_table(pa.table(dict(y=[float(sys.argv[1]) * 10])), sys.argv[2])")
    command = f"{shlex.quote(sys.executable)} -c {shlex.quote(code)} {{a}} {{result}}"
    s = corral.Sweep("rows", {"a": [1, 2, 3, 4, 5]}, command, chunk_size=2, cpu=0.5, backend=backend,
                     results_url=str(tmp_path / "store"))
    assert s.spec.command.per_row
    status = s.run(progress=False, timeout=300)
    assert status.complete, status.failures
    assert sorted((r["a"], r["y"]) for r in s.results().to_pylist()) == [(a, a * 10.0) for a in range(1, 6)]


def test_bad_specs_submit_nothing(backend: corral.ServiceBackend) -> None:
    before = len(backend.client().list_batches(limit=1000).batches)
    for kwargs in ({"command": "fit {alpha} {result}"}, {"table": {"a": []}}, {"chunk_size": 0}):
        args = {"name": "bad", "table": {"a": [1]}, "command": "fit {chunk} {result}", **kwargs}
        with pytest.raises(InvalidInput):
            corral.Sweep(**args, backend=backend)  # type: ignore[arg-type]
    assert len(backend.client().list_batches(limit=1000).batches) == before


def test_two_runs_of_the_same_sweep_at_once_run_each_chunk_once(
    server: RunningServer, tmp_path: Path
) -> None:
    import threading

    statuses: list[object] = []

    def run_one() -> None:
        with backend_for(server) as own:
            s = corral.Sweep("twice", {"a": list(range(12)), "b": [1.0]}, py_command(FIT), chunk_size=2,
                             cpu=0.5, backend=own, results_url=str(tmp_path / "store"))
            statuses.append(s.run(progress=False, timeout=300))

    threads = [threading.Thread(target=run_one) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=400)
    assert len(statuses) == 2 and all(s.complete for s in statuses)  # type: ignore[attr-defined]
    with backend_for(server) as backend:
        runs = jobs_per_chunk(backend, "twice")
        assert len(runs) == 6 and all(states == ["Success"] for states in runs.values()), runs
        merged = corral.Sweep("twice", {"a": list(range(12)), "b": [1.0]}, py_command(FIT), chunk_size=2,
                              backend=backend, results_url=str(tmp_path / "store")).results()
    assert sorted(merged.column("a").to_pylist()) == list(range(12))
