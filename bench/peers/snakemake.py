"""Snakemake with its local executor: one rule instance per job, `true` as the shell command."""

from __future__ import annotations

import subprocess
import time
import uuid

from bench.context import Context
from bench.model import BenchError
from bench.paths import WORK
from bench.peers.install import peers_python

TRUE_JOBS = """
rule all:
    input: expand("done/{i}", i=range(config["n_jobs"]))
rule job:
    output: touch("done/{i}")
    shell: "true"
"""

DAG = """
rule all:
    input: "sink"
rule root:
    output: touch("root")
    shell: "true"
rule mid:
    input: "root"
    output: touch("mid/{i}")
    shell: "true"
rule sink:
    input: expand("mid/{i}", i=range(config["n_jobs"]))
    output: touch("sink")
    shell: "true"
"""


def _run(ctx: Context, snakefile: str, n: int, slots: int, expect: int) -> float:
    python = peers_python(ctx)
    work = WORK / "snakemake" / uuid.uuid4().hex[:8]
    work.mkdir(parents=True)
    (work / "Snakefile").write_text(snakefile)
    cmd = [str(python), "-m", "snakemake", "all", "--cores", str(slots), "--nolock", "--quiet",
           "--config", f"n_jobs={n}"]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=300 + n)
    elapsed = time.perf_counter() - t0
    if done.returncode != 0:
        raise BenchError(f"snakemake exited {done.returncode}: {(done.stderr or done.stdout).strip()[-300:]}")
    outputs = [p for p in work.rglob("*") if p.is_file() and ".snakemake" not in p.parts]
    made = len(outputs) - 1  # less the Snakefile
    if made != expect:
        raise BenchError(f"snakemake made {made} outputs, expected {expect}")
    return elapsed


def run_true(ctx: Context, n: int, slots: int) -> float:
    return _run(ctx, TRUE_JOBS, n, slots, expect=n)


def run_dag(ctx: Context, fanout: int, slots: int) -> float:
    return _run(ctx, DAG, fanout, slots, expect=fanout + 2)
