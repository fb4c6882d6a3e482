"""W12: a parameter sweep of N rows in N/100 chunks (full: 1,000,000 rows, 10,000 chunks).

* submit: `corral.Sweep(...)` (chunking, keys) + `run(wait=False)` (each chunk's input Parquet written,
  one batch of a job per chunk accepted) against a server with no workers, so nothing runs;
* merge: the chunks' result files are then written as the jobs would, and `corral sweep results NAME`'s
  merge (read each input and result, check the schema, join the parameters, stream into one part)
  runs in a fresh process, next to pyarrow.dataset reading the same result files and writing the same
  rows (`ds.write_dataset`) in its own fresh process: time and peak RSS of each.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from bench.context import Context
from bench.corral_server import CorralServer
from bench.model import Result
from bench.paths import ROOT, WORK
from bench.workloads.common import Outcome, interleaved, rows, start_server

CHUNK_ROWS = 100
COMMAND = "fit --in {chunk} --out {result}"  # never runs: the server has no workers


def _grid(n_rows: int) -> dict[str, list[float]]:
    side = round(n_rows ** 0.5)
    return {"alpha": [i / side for i in range(side)], "beta": [float(j) for j in range(n_rows // side)]}


def _sweep(server: CorralServer, name: str, store: Path, n_rows: int) -> object:
    import corral

    backend = corral.ServiceBackend(server.url, server.token, home=server.home)
    return corral.Sweep(name, _grid(n_rows), COMMAND, chunk_size=CHUNK_ROWS, cpu=0.25, backend=backend,
                        schema={"loglik": "float64", "converged": "bool"}, results_url=str(store))


def submission(server: CorralServer, n_rows: int, made: list[tuple[str, Path]],
               spec_seconds: list[float]) -> Callable[[], float]:
    def once() -> float:
        name = f"w11-{uuid.uuid4().hex[:6]}"
        store = WORK / f"w11-store-{name}"
        t0 = time.perf_counter()
        sweep = _sweep(server, name, store, n_rows)
        spec_seconds.append(time.perf_counter() - t0)
        status = sweep.run(wait=False)  # type: ignore[attr-defined]
        elapsed = time.perf_counter() - t0
        with server.client() as c:
            batch = server.batch(c, status.batches[0])
        if batch["n_jobs"] != -(-n_rows // CHUNK_ROWS):
            raise RuntimeError(f"batch {batch['id']} has {batch['n_jobs']} jobs")
        made.append((name, store))
        return elapsed

    return once


def write_results(name: str, store: Path, n_rows: int, server: CorralServer) -> list[str]:
    """What the jobs would write: per chunk a result with _row, loglik, converged."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from corral.sweeps import submit

    sweep = _sweep(server, name, store, n_rows)
    files = []
    for chunk in sweep.chunks:  # type: ignore[attr-defined]
        url = submit.result_url(sweep.spec, sweep.layout, chunk)  # type: ignore[attr-defined]
        path = url.removeprefix("file://")
        n = chunk.n_rows
        pq.write_table(pa.table({"_row": pa.array(range(n), pa.int64()),
                                 "loglik": pa.array([-float(i) for i in range(n)]),
                                 "converged": pa.array([i % 7 != 0 for i in range(n)])}), path)
        files.append(path)
    return files


def child(mode: str, *args: str) -> dict[str, float]:
    done = subprocess.run([sys.executable, "-m", "bench.workloads.w12_merge", mode, *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=1800)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} merge failed: {done.stderr.strip()[-400:]}")
    return dict(json.loads(done.stdout.strip().splitlines()[-1]))


def run(ctx: Context) -> list[Result]:
    s = ctx.sizes
    n_rows = s.w11_rows
    n_chunks = -(-n_rows // CHUNK_ROWS)
    made: list[tuple[str, Path]] = []
    results: list[Result] = []
    try:
        # The sweep's store is under the bench's work dir: the site allows file:// URLs there.
        files = json.dumps({"allowed_roots": [str(WORK)]})
        server = start_server(ctx, "w11", {"local_workers": "0", "files": files})
        spec_seconds: list[float] = []
        subs = interleaved(ctx, "W12", {"Corral": submission(server, n_rows, made, spec_seconds)},
                           s.w11_repeats)
        spec = f"{statistics.median(spec_seconds):.1f} s" if spec_seconds else "?"
        results += rows("W12", "sweep submitted", "s", subs, higher_is_better=False, notes={
            "Corral": f"{n_rows:,} rows into {n_chunks:,} chunks: Sweep() (table, chunk keys: {spec}) + "
                      "run(wait=False) (input Parquet per chunk + one batch of a job per chunk accepted); "
                      f"no workers; load average at start {os.getloadavg()[0]:.1f}"})
        if not made:
            return results
        name, store = made[0]
        files = write_results(name, store, n_rows, server)
        list_file = WORK / f"w11-files-{name}.json"
        list_file.write_text(json.dumps(files))
        memory: dict[str, list[float]] = {"Corral": [], "pyarrow.dataset": []}

        def corral_merge() -> float:
            shutil.rmtree(store / name / "merged", ignore_errors=True)  # each repeat merges everything
            out = child("corral", server.url, server.token, name, str(store))
            if out["rows"] != n_rows:
                raise RuntimeError(f"merged {out['rows']} rows, expected {n_rows}")
            memory["Corral"].append(out["peak_rss_mib"])
            return out["seconds"]

        def pyarrow_write() -> float:
            target = WORK / f"w11-pyarrow-{name}"
            shutil.rmtree(target, ignore_errors=True)
            out = child("pyarrow", str(list_file), str(target))
            if out["rows"] != n_rows:
                raise RuntimeError(f"pyarrow wrote {out['rows']} rows, expected {n_rows}")
            memory["pyarrow.dataset"].append(out["peak_rss_mib"])
            shutil.rmtree(target, ignore_errors=True)
            return out["seconds"]

        merges = interleaved(ctx, "W12", {"Corral": corral_merge, "pyarrow.dataset": pyarrow_write},
                             s.w11_repeats)
        results += rows("W12", f"merge {n_chunks:,} results", "s", merges, higher_is_better=False, notes={
            "Corral": "read + check + join each chunk (input + result), stream into one Parquet part",
            "pyarrow.dataset": "ds.write_dataset(ds.dataset(the same result files)): no checks, no join"})
        peaks = {k: Outcome(samples=v) for k, v in memory.items()}
        results += rows("W12", "merge peak RSS", "MiB", peaks, higher_is_better=False, notes={
            "Corral": "whole process (Python + pyarrow + corral imported): memory bounded by a chunk",
            "pyarrow.dataset": "whole process, same files"})
    except Exception as exc:
        results.append(Result("W12", "Corral", "run", None, "", error=f"{type(exc).__name__}: {exc}"[:400]))
    finally:
        for name, store in made:
            shutil.rmtree(store, ignore_errors=True)
            (WORK / f"w11-files-{name}.json").unlink(missing_ok=True)
    return results
