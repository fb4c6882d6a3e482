"""The process runtime's own sandbox with no Corral around it: W3's floor for the process runtime.

    python -m bench.peers.sandbox_floor N PARALLEL   (prints the seconds N jobs of `true` took)

Each job gets what a Corral job gets from the process runtime, built by the runtime's own functions:
the same bwrap command line (root layout, hidden secrets, /io and /tmp binds, pid/ipc/uts namespaces,
seccomp filter, no capabilities, setpriv to its own uid on a root machine), the private network (a
pooled slirp4netns namespace the spawner enters, as the runtime does), cgroups with the same limits
from the runtime's own pool (v1: reused from one job to the next, as the runtime does), in force before the
job's first instruction the way the runtime does it (cgroup v1: bwrap born in them, the starting thread
joining them for that moment; v2: the same gate), given back after it off the slot's path.
What it leaves out is Corral: no server, no worker, no events, no scratch bookkeeping, log capture,
default storage volume or usage; PARALLEL slots each start one job and wait for it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.model import BenchError
from corral.config import Settings
from corral.runtimes.base import MainRequest
from corral.runtimes.cgroups import Limits
from corral.runtimes.identity import give_to
from corral.runtimes.network import PrivateNetwork, resolv_conf
from corral.runtimes.process import ProcessRuntime
from corral.runtimes.sandbox import bwrap_argv
from corral.runtimes.seccomp import open_filter
from corral.runtimes.spawn import spawn

MEMORY = 16 * 1024**3 // 8  # W3's worker: 16 GiB over 8 slots; the limit only has to be set
CORES_MCPU = 250  # W3's jobs ask 0.25 cpu


async def _job(runtime: ProcessRuntime, network: PrivateNetwork | None, root: Path, i: int) -> None:
    key = f"floor-{i}"
    scratch = root / key
    io_dir, tmp_dir = scratch / "io", scratch / "tmp"
    io_dir.mkdir(parents=True)
    tmp_dir.mkdir()
    user = runtime.users.acquire(key)
    give_to(user, io_dir, tmp_dir)
    request = MainRequest(key=key, command=["true"], io_dir=io_dir, scratch=scratch, tmp_dir=tmp_dir,
                          log_path=scratch / "main.log", cores_mcpu=CORES_MCPU, memory_bytes=MEMORY)
    pool = runtime.cgroup_pool
    assert pool is not None
    group = pool.take(key, Limits(MEMORY, CORES_MCPU, runtime.pids_limit))
    extra = ["--ro-bind", str(resolv_conf(scratch)), "/etc/resolv.conf"] if network is not None else []
    seccomp_fd = open_filter(runtime.seccomp)
    entry, gate = runtime.sandbox_entry(group)  # in its cgroups before its first instruction, as a job
    try:
        sandbox = bwrap_argv(runtime.bwrap, request, view=runtime.view, user=user, setpriv=runtime.setpriv,
                             seccomp_fd=seccomp_fd, unshare_net=network is None, extra=extra)
        if gate is not None:
            sandbox[1:1] = gate.args()
        with open(request.log_path, "wb") as log:
            proc = await spawn(sandbox, env={"PATH": "/usr/bin:/bin"}, stdout=log.fileno(),
                               pass_fds=[seccomp_fd], gate=gate, cgroups=entry,
                               netns=network.path if network is not None else None)
    finally:
        if gate is not None:
            gate.close()
        os.close(seccomp_fd)
    if await proc.wait() != 0:
        raise SystemExit(f"sandbox floor: job {key} failed: {request.log_path.read_text()}")
    runtime.release_later(group)  # as the runtime: off the slot's path
    runtime.users.release(key)
    shutil.rmtree(scratch)


async def _run(n: int, parallel: int) -> float:
    root = Path(tempfile.mkdtemp(prefix="corral-floor-"))
    settings = Settings(home=root / "home")
    name = f"floor-{os.getpid()}"
    runtime = ProcessRuntime(instance_name=name, work_dir=root / "worker", settings=settings)
    (root / "worker").mkdir()
    await runtime.start()
    private = runtime.network_of(None) == "nat"
    networks = [await runtime.networks.take() if private else None for _ in range(parallel)]

    async def slot(s: int) -> None:
        for i in range(s, n, parallel):
            await _job(runtime, networks[s], root / "jobs", i)

    try:
        t0 = time.perf_counter()
        await asyncio.gather(*(slot(s) for s in range(parallel)))
        elapsed = time.perf_counter() - t0
    finally:
        for net in networks:
            if net is not None:
                runtime.networks.give_back(net)
        await runtime.close()
        shutil.rmtree(root, ignore_errors=True)
    return elapsed


def run_true(n: int, parallel: int) -> float:
    """Seconds for N jobs, PARALLEL at a time, in a process of its own (it needs root for the job uids)."""
    done = subprocess.run([sys.executable, "-m", "bench.peers.sandbox_floor", str(n), str(parallel)],
                          capture_output=True, text=True, timeout=120 + n)
    if done.returncode != 0:
        raise BenchError(f"sandbox floor exited {done.returncode}: {done.stderr[-300:]}")
    return float(done.stdout.split()[-1])


def main() -> None:
    n, parallel = int(sys.argv[1]), int(sys.argv[2])
    print(f"{asyncio.run(_run(n, parallel)):.6f}")


if __name__ == "__main__":
    main()
