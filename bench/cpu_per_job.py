"""CPU per job of Corral's own processes (server+driver, worker) for N `true` jobs: load-insensitive.

    python -m bench.cpu_per_job --jobs 200 --runtime process [--profile out.txt [--profile-server]]

Wall-clock rates on a loaded machine are noise; CPU seconds spent by the server and the worker per job
(psutil cpu_times before/after, jobs' own processes counted apart as the worker's children) are not.
`--profile` records the worker (the server with `--profile-server`) with py-spy, if installed, and
writes its top functions.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import psutil

from bench.corral_server import CorralServer, job_spec
from bench.paths import cores
from bench.workloads.common import CORRAL_JOB_CPU, process_worker_settings


def _cpu(proc: psutil.Process) -> tuple[float, float]:
    t = proc.cpu_times()
    return t.user + t.system, t.children_user + t.children_system


def _batch(server: CorralServer, n: int) -> float:
    jobs = [job_spec(i, ["true"], cpu=CORRAL_JOB_CPU) for i in range(1, n + 1)]
    with server.client() as c:
        # Polled slowly: each status poll costs the server CPU, and how many polls a job sees depends on
        # the machine's load (its wall time), not on Corral. At 0.5 s they are a small share of the figure.
        return server.run_batch(c, jobs, timeout=60 + n, poll=0.5, bunches=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--runtime", default="process")
    parser.add_argument("--profile", type=Path, default=None)
    parser.add_argument("--profile-server", action="store_true",
                        help="profile the server(+driver) process instead of the worker")
    args = parser.parse_args()
    settings = process_worker_settings() | {"local_worker_runtime": args.runtime}
    if args.runtime == "host":
        settings["jobs"] = json.dumps({"allow_host_runtime": True})
    with CorralServer(f"cpu-{args.runtime}", settings) as server:
        assert server.proc is not None
        deadline = time.monotonic() + 60
        workers: list[int] = []
        while not workers and time.monotonic() < deadline:
            workers = [p for p in server.worker_pids() if p != server.proc.pid]
            time.sleep(0.2)
        _batch(server, 20)  # warm up: imports, first connections, network pool
        srv, wrk = psutil.Process(server.proc.pid), psutil.Process(workers[0])
        spy = None
        if args.profile is not None and shutil.which("py-spy"):
            target = srv.pid if args.profile_server else wrk.pid
            spy = subprocess.Popen(["py-spy", "record", "-p", str(target), "-f", "raw", "-r", "1000",
                                    "-o", str(args.profile.with_suffix(".raw")), "--nonblocking", "--gil"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1.0)
        # The host runtime's jobs are children of the worker's spawner process (runtimes/spawner.py)
        spawners = [c for c in wrk.children() if "spawner_main" in " ".join(c.cmdline())]
        s0, w0, p0 = _cpu(srv), _cpu(wrk), [_cpu(p) for p in spawners]
        load = os.getloadavg()[0]
        seconds = _batch(server, args.jobs)
        s1, w1, p1 = _cpu(srv), _cpu(wrk), [_cpu(p) for p in spawners]
        spawner_cpu = sum(b[0] - a[0] for a, b in zip(p0, p1, strict=True))
        jobs_cpu = w1[1] - w0[1] + sum(b[1] - a[1] for a, b in zip(p0, p1, strict=True))
        if spy is not None:
            spy.send_signal(2)
            spy.wait(60)
        n = args.jobs
        print(f"runtime={args.runtime} jobs={n} cores={cores()} load1={load:.1f}")
        print(f"  server+driver CPU per job: {1000 * (s1[0] - s0[0]) / n:.2f} ms")
        print(f"  worker CPU per job:        {1000 * (w1[0] - w0[0]) / n:.2f} ms")
        if spawners:
            print(f"  worker's spawner CPU per job: {1000 * spawner_cpu / n:.2f} ms")
        print(f"  job processes (worker's children) CPU per job: {1000 * jobs_cpu / n:.2f} ms")
        print(f"  wall: {seconds:.2f} s = {n / seconds:.1f} jobs/s (noise under load)")
        if spy is not None and args.profile is not None:
            _summarise(args.profile.with_suffix(".raw"), args.profile)


def _summarise(raw: Path, out: Path) -> None:
    """py-spy's collapsed stacks -> inclusive sample share per function, top 40."""
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        total += int(count)
        for frame in set(stack.split(";")):
            inclusive[frame] = inclusive.get(frame, 0) + int(count)
    top = sorted(inclusive.items(), key=lambda kv: -kv[1])[:60]
    out.write_text("".join(f"{100 * c / total:5.1f}%  {f}\n" for f, c in top))
    print(f"  profile: {out} ({total} samples)")


if __name__ == "__main__":
    main()
