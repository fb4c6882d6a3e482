"""Sweeps survive crashes: the server SIGKILLed mid-sweep, the job-folder watcher killed and restarted;
and the CLI end to end (one-line errors, never a traceback)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
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
from corral.errors import CorralError
from corral.sweeps import submit

pytestmark = pytest.mark.slow


def test_server_sigkilled_mid_sweep_then_a_rerun_runs_only_missing_chunks(tmp_path: Path) -> None:
    server = start_server(tmp_path / "home")
    try:
        store = str(tmp_path / "store")
        args = dict(name="crash", table={"a": list(range(30)), "b": [0.0, 1.0]},
                    command=py_command(FIT, before="sleep 0.5; "), chunk_size=2, cpu=0.5,
                    results_url=store, schema={"y": "float64"})
        with backend_for(server) as backend:
            s = corral.Sweep(**args, backend=backend)  # type: ignore[arg-type]
            s.run(wait=False)
            results = [Path(submit.result_url(s.spec, s.layout, c).removeprefix("file://")) for c in s.chunks]
            wait_for("a few results", lambda: sum(r.exists() for r in results) >= 4)
        server.kill(signal.SIGKILL)
        lost = [c for c, r in zip(s.chunks, results, strict=True) if r.exists()][:2]
        for chunk in lost:  # results lost with the crash: these must run again, nothing else
            Path(submit.result_url(s.spec, s.layout, chunk).removeprefix("file://")).unlink()
        server.start()
        with backend_for(server) as backend:
            first_batches = {int(str(b["id"])) for b in submit.sweep_batches(backend.client(), "crash")}
            status = corral.Sweep(**args, backend=backend).run(progress=False, timeout=300)  # type: ignore[arg-type]
            assert status.complete, status.failures
            check_grid_result(corral.Sweep(**args, backend=backend).results(), 30, 2, 2)  # type: ignore[arg-type]
            new_batches = set(status.batches) - first_batches
            rerun = {key for b in new_batches for key, _ in submit.iter_chunk_jobs(backend.client(), b)}
            assert rerun == {c.key for c in lost}
            runs = jobs_per_chunk(backend, "crash")
            assert all(len(states) == (2 if key in rerun else 1) for key, states in runs.items())
    finally:
        server.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = start_server(tmp_path_factory.mktemp("sweep-cli") / "home")
    yield running
    running.stop()


def cli(server: RunningServer, *argv: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env["COLUMNS"] = "300"  # rich wraps long lines at the terminal's width: one message, one line here
    argv = ("--url", server.url, "--token", server.token, *argv)
    return subprocess.run([sys.executable, "-m", "corral", *argv],
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=600)


def watcher(server: RunningServer, folder: Path, command: str, *extra: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    return subprocess.Popen(
        [sys.executable, "-m", "corral", "--url", server.url, "--token", server.token, "sweep", "watch",
         str(folder), "--command", command, "--poll", "0.2", "--schema", "y=float64", *extra],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


WATCH_FIT = """
import sys, pyarrow as pa, pyarrow.csv as csv, pyarrow.parquet as pq, pyarrow.compute as pc
t = csv.read_csv(sys.argv[1])
if 'b' not in t.column_names:
    sys.exit(3)
pq.write_table(pa.table(dict(y=pc.multiply(t['a'], t['b']).cast('double'))), sys.argv[2])
"""


def drop(folder: Path, name: str, a: list[int]) -> None:
    tmp = folder / "inbox" / f".{name}.partial"
    pacsv.write_csv(pa.table({"a": a, "b": [2.0] * len(a)}), tmp)
    tmp.rename(folder / "inbox" / name)  # dropped whole, as a user's mv does


def test_job_folder_watcher_killed_and_restarted_loses_and_duplicates_nothing(
    server: RunningServer, tmp_path: Path
) -> None:
    folder = tmp_path / "jobs"
    (folder / "inbox").mkdir(parents=True)
    command = py_command(WATCH_FIT, before="sleep 0.3; ")
    names = [f"garch_test_job_{i:04d}_{i + 9:04d}.csv" for i in range(0, 60, 10)]
    for i, name in enumerate(names[:3]):
        drop(folder, name, list(range(i * 10, i * 10 + 10)))
    (folder / "inbox" / "broken_0000_0009.csv").write_text("a\n1\n2\n")  # no b: the job exits 3
    first = watcher(server, folder, command)
    try:
        for i, name in enumerate(names[3:], start=3):  # files arrive while it runs
            drop(folder, name, list(range(i * 10, i * 10 + 10)))
        wait_for("two done", lambda: len(list((folder / "done").glob("*.csv"))) >= 2)
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    late = "garch_test_job_0100_0109.csv"
    drop(folder, late, list(range(100, 110)))
    second = watcher(server, folder, command, "--once")
    _, err = second.communicate(timeout=300)
    assert second.returncode == 0, err
    done = sorted(p.name for p in (folder / "done").iterdir())
    assert done == sorted([*names, late])
    assert sorted(p.name for p in (folder / "failed").iterdir()) == [
        "broken_0000_0009.csv", "broken_0000_0009.csv.reason.txt"]
    reason = (folder / "failed" / "broken_0000_0009.csv.reason.txt").read_text()
    assert "exit code 3" in reason and "corral job log" in reason
    assert not list((folder / "inbox").iterdir()) and not list((folder / "running").iterdir())
    results = sorted(p.name for p in (folder / "results").iterdir())
    assert results == sorted(n.replace(".csv", ".parquet") for n in [*names, late])
    with backend_for(server) as backend:  # one batch per job file: none ran twice
        batches = backend.client().list_batches(q=f"sweep_watch={folder.resolve()}", limit=1000).batches
        files = sorted(b.attributes["file"] for b in batches)
    assert files == sorted([*names, late, "broken_0000_0009.csv"])


def test_cli_runs_a_spec_file_then_status_results_and_retry(server: RunningServer, tmp_path: Path) -> None:
    spec = tmp_path / "grid.yaml"
    spec.write_text(
        "name: cli-grid\n"
        "grid: {a: [0, 1, 2, 3, 4], b: [0.0, 1.0, 2.0, 3.0]}\n"
        "chunk_size: 4\ncpu: 0.5\nschema: {y: float64}\n"
        f"results: {tmp_path / 'store'}\n"
        f"command: {json.dumps(py_command(FIT))}\n"
    )
    ran = cli(server, "sweep", "run", str(spec), "--json")
    assert ran.returncode == 0, ran.stderr
    status = json.loads(ran.stdout)
    assert status["complete"] and status["merged_rows"] == 20
    shown = cli(server, "sweep", "status", "cli-grid", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["merged"] == 5
    out = tmp_path / "out.csv"
    exported = cli(server, "sweep", "results", "cli-grid", "--format", "csv", "--to", str(out))
    assert exported.returncode == 0, exported.stderr
    table = pacsv.read_csv(out)
    check_grid_result(table, 5, 4, 4)
    retried = cli(server, "sweep", "retry", "cli-grid", "--failed", "--json")
    assert retried.returncode == 0 and json.loads(retried.stdout)["complete"]


@pytest.mark.parametrize(
    ("body", "words"),
    [
        ("name: bad\ngrid: {a: [1]}\ncommand: fit --x {alpha} --out {result}\n", "{alpha} is not a column"),
        ("name: bad\ngrid: {a: []}\ncommand: fit {chunk} {result}\n", "no rows"),
        ("name: bad\ngrid: {a: [1]}\nchunk_size: 0\ncommand: fit {chunk} {result}\n", "chunk_size"),
        ("name: bad\ngrid: {a: [1]}\ncomand: fit {chunk} {result}\n", "comand"),
        ("name: [unclosed\n", "cannot read"),
    ],
)
def test_cli_bad_specs_are_one_line_errors_and_submit_nothing(
    server: RunningServer, tmp_path: Path, body: str, words: str
) -> None:
    with backend_for(server) as backend:
        before = len(backend.client().list_batches(limit=1000).batches)
        spec = tmp_path / "bad.yaml"
        spec.write_text(body)
        ran = cli(server, "sweep", "run", str(spec))
        assert ran.returncode == 1
        assert words in ran.stderr and "Traceback" not in ran.stderr + ran.stdout
        assert len(ran.stderr.strip().splitlines()) == 1, ran.stderr
        assert len(backend.client().list_batches(limit=1000).batches) == before
    missing = cli(server, "sweep", "status", "no-such-sweep")
    assert missing.returncode == 1 and "no sweep 'no-such-sweep'" in missing.stderr


def test_a_job_file_the_server_refuses_goes_to_failed_with_the_reason(
    server: RunningServer, tmp_path: Path
) -> None:
    folder = tmp_path / "jobs"
    (folder / "inbox").mkdir(parents=True)
    drop(folder, "job_0000_0009.csv", list(range(10)))
    ran = watcher(server, folder, py_command(WATCH_FIT), "--pool", "no-such-pool", "--once")
    _, err = ran.communicate(timeout=120)
    assert ran.returncode == 0, err
    assert sorted(p.name for p in (folder / "failed").iterdir()) == [
        "job_0000_0009.csv", "job_0000_0009.csv.reason.txt"]
    reason = (folder / "failed" / "job_0000_0009.csv.reason.txt").read_text()
    assert "refused" in reason and "no-such-pool" in reason


def test_a_sweep_on_a_pool_that_does_not_exist_is_a_clear_error(
    server: RunningServer, tmp_path: Path
) -> None:
    with backend_for(server) as backend:
        s = corral.Sweep("nopool", {"a": [1, 2]}, py_command(FIT), pool="no-such-pool", backend=backend,
                         results_url=str(tmp_path / "store"))
        with pytest.raises(CorralError) as err:
            s.run(progress=False)
        assert err.value.status_code == 400 and "no-such-pool" in err.value.message
        assert not submit.sweep_batches(backend.client(), "nopool")


def test_cli_spec_with_a_function_from_a_module_beside_it(server: RunningServer, tmp_path: Path) -> None:
    (tmp_path / "fits.py").write_text(
        "def fit(chunk):\n"
        "    return {'y': [a * b for a, b in zip(chunk['a'].to_pylist(), chunk['b'].to_pylist())]}\n")
    pq_table = tmp_path / "params.csv"
    pacsv.write_csv(pa.table({"a": [0, 1, 2, 3], "b": [0.0, 0.0, 0.0, 0.0]}), pq_table)
    spec = tmp_path / "fn.yaml"
    spec.write_text(f"name: cli-fn\ntable: params.csv\nchunk_size: 3\ncpu: 0.5\nfunction: fits:fit\n"
                    f"results: {tmp_path / 'store'}\n")
    ran = cli(server, "sweep", "run", str(spec), "--json", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr + ran.stdout
    assert json.loads(ran.stdout)["merged_rows"] == 4
