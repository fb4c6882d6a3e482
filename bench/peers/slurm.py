"""SLURM on this machine: the tuned single-node setup of scripts/slurm.sh, driven with sbatch."""

from __future__ import annotations

import os
import re
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from bench.context import Context
from bench.model import BenchError
from bench.paths import ROOT, WORK

SLURM_DIR = WORK / "slurm"
LINE = re.compile(r"JobId=(\d+) .*?JobState=(\S+) .*?ExitCode=(\d+):(\d+)")


@dataclass
class Slurm:
    env: dict[str, str]
    workdir: Path
    jobcomp: Path
    _offset: int = 0
    _done: list[tuple[int, bool]] = field(default_factory=list)

    def sbatch(self, *args: str) -> int:
        done = subprocess.run(["sbatch", "--parsable", "-o", "/dev/null", "-e", "/dev/null", *args],
                              env=self.env, cwd=self.workdir, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise BenchError(f"sbatch failed: {done.stderr.strip()[-200:]}")
        return int(done.stdout.strip().split(";")[0])

    def mark(self) -> None:
        """Forget completions so far: the next wait counts only jobs finished after this."""
        self._poll()
        self._done.clear()

    def wait_done(self, n: int, timeout: float, poll: float = 0.01) -> None:
        """Wait until n more jobs are in the completion log; all of them must have exited 0."""
        deadline = time.monotonic() + timeout
        while len(self._done) < n:
            if time.monotonic() > deadline:
                raise BenchError(f"SLURM: {len(self._done)}/{n} jobs complete after {timeout:.0f}s")
            time.sleep(poll)
            self._poll()
        bad = sum(1 for _, ok in self._done if not ok)
        if bad:
            raise BenchError(f"SLURM: {bad}/{len(self._done)} jobs did not complete with exit code 0")

    def wait_job(self, job_id: int, timeout: float, poll: float = 0.005) -> None:
        deadline = time.monotonic() + timeout
        while not any(j == job_id for j, _ in self._done):
            if time.monotonic() > deadline:
                raise BenchError(f"SLURM: job {job_id} not complete after {timeout:.0f}s")
            time.sleep(poll)
            self._poll()

    def _poll(self) -> None:
        try:
            with open(self.jobcomp, "rb") as f:
                f.seek(self._offset)
                chunk = f.read()
        except FileNotFoundError:
            return
        end = chunk.rfind(b"\n") + 1
        self._offset += end
        for line in chunk[:end].decode(errors="replace").splitlines():
            m = LINE.search(line)
            if m:
                ok = m.group(2) == "COMPLETED" and m.group(3) == "0"
                self._done.append((int(m.group(1)), ok))


def start(ctx: Context) -> Slurm:
    """Start the private SLURM (installs slurm-wlm on first use); stopped when the run ends."""
    ctx.log("SLURM: scripts/slurm.sh start")
    done = subprocess.run([str(ROOT / "scripts/slurm.sh"), "start"], capture_output=True, text=True,
                          timeout=600)
    if done.returncode != 0:
        raise BenchError(f"scripts/slurm.sh start failed: {done.stderr.strip()[-300:]}")
    ctx.cleanup.callback(lambda: subprocess.run([str(ROOT / "scripts/slurm.sh"), "stop"], check=False,
                                                capture_output=True))
    conf = done.stdout.strip().splitlines()[-1].split("=", 1)[1]
    env = {**os.environ, "SLURM_CONF": conf}
    SLURM_DIR.mkdir(parents=True, exist_ok=True)
    slurm = Slurm(env, SLURM_DIR, Path(conf).parent.parent / "log" / "jobcomp.txt")
    slurm.mark()
    return slurm


def get(ctx: Context) -> Slurm:
    return ctx.shared("slurm", lambda: start(ctx))


def run_true_sbatch(ctx: Context, n: int) -> float:
    """W3: n plain `sbatch --wrap true` jobs; seconds from the first submit to the last completion."""
    slurm = get(ctx)
    slurm.mark()
    t0 = time.perf_counter()
    for _ in range(n):
        slurm.sbatch("--wrap", "true")
    slurm.wait_done(n, timeout=60 + n)
    return time.perf_counter() - t0


def run_true_array(ctx: Context, n: int) -> float:
    """W3: one job array of n tasks running `true`."""
    slurm = get(ctx)
    slurm.mark()
    t0 = time.perf_counter()
    slurm.sbatch(f"--array=1-{n}", "--wrap", "true")
    slurm.wait_done(n, timeout=60 + n)
    return time.perf_counter() - t0


def run_dag(ctx: Context, fanout: int) -> float:
    """W4: root job → array of `fanout` tasks (afterok:root) → sink (afterok:array)."""
    slurm = get(ctx)
    slurm.mark()
    t0 = time.perf_counter()
    root = slurm.sbatch("--wrap", "true")
    mid = slurm.sbatch(f"--dependency=afterok:{root}", f"--array=1-{fanout}", "--wrap", "true")
    slurm.sbatch(f"--dependency=afterok:{mid}", "--wrap", "true")
    slurm.wait_done(fanout + 2, timeout=60 + 2 * fanout)
    return time.perf_counter() - t0


def latency(ctx: Context) -> float:
    """W5: one `sbatch --wrap true`, seconds from submit until it is in the completion log."""
    slurm = get(ctx)
    slurm.mark()
    t0 = time.perf_counter()
    job = slurm.sbatch("--wrap", "true")
    slurm.wait_job(job, timeout=60)
    elapsed = time.perf_counter() - t0
    slurm.wait_done(1, timeout=1)
    return elapsed
