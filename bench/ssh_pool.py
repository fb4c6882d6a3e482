"""SSH pool figures on this machine: worker install, scale-out latency, throughput, scale-in.

    .venv/bin/python -m bench.ssh_pool [--jobs 200] [--hosts 2] [--instances-per-host 2]

Starts scripts/sshd.sh (loopback sshd), a real `corral server` whose default pool is an ssh pool at 0
instances, submits trivial jobs and reads the timings back from the store. Nothing here is asserted.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tests.acceptance.harness import RunningServer, job
from tests.acceptance.sshbed import SshTestbed, collections_toml

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--hosts", type=int, default=2)
    parser.add_argument("--instances-per-host", type=int, default=2)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="corral-bench-ssh-"))
    subprocess.run([str(ROOT / "scripts" / "sshd.sh"), "start", str(work / "sshd"), "0"], check=True,
                   capture_output=True)
    testbed = SshTestbed(work / "sshd", work / "hosts")
    server: RunningServer | None = None
    try:
        per = args.instances_per_host
        hosts = [
            testbed.loopback_host(f"lb{i}", cores=per, memory=f"{per}Gi") for i in range(1, args.hosts + 1)
        ]
        config = work / "corral.toml"
        config.write_text(collections_toml([{
            "name": "bench", "provider": "ssh", "shape": {"cores": 1, "memory": "512Mi"},
            "max_instances": args.hosts * per, "max_new_instances_per_loop": args.hosts * per,
            "idle_seconds": 3.0, "provider_options": {"hosts": hosts},
        }]))
        home = work / "home"
        home.mkdir()
        env = {
            "PATH": "/usr/bin:/bin", "HOME": str(Path.home()), "CORRAL_HOME": str(home), "CORRAL_PORT": "0",
            "CORRAL_URL_FILE": str(home / "server.url"), "CORRAL_LOCAL_WORKERS": "0", "CORRAL_POOL": "bench",
            "CORRAL_CONFIG": str(config), "CORRAL_HEARTBEAT_TIMEOUT": "20",
        }
        server = RunningServer(home, env)
        server.start()
        for label in ("cold (venv installed on the hosts)", "warm (venv reused)"):
            run(server, label, args.jobs)
    finally:
        if server is not None:
            server.stop()
        subprocess.run([str(ROOT / "scripts" / "sshd.sh"), "stop", str(work / "sshd")], check=False)
        shutil.rmtree(work, ignore_errors=True)


def run(server: RunningServer, label: str, n: int) -> None:
    submitted = time.time()
    batch_id = server.submit([job("true", i, cpu="1", memory="64Mi") for i in range(1, n + 1)])
    status = server.wait(batch_id, timeout=1800)
    with sqlite3.connect(server.home / "corral.db") as db:
        first_start, last_end = db.execute(
            "SELECT MIN(time_started), MAX(time_ended) FROM attempts WHERE batch_id = ?", (batch_id,)
        ).fetchone()
        instances = db.execute("SELECT COUNT(DISTINCT instance_name) FROM attempts WHERE batch_id = ?",
                               (batch_id,)).fetchone()[0]
    while True:  # back to zero
        with sqlite3.connect(server.home / "corral.db") as db:
            query = "SELECT COUNT(*) FROM instances WHERE state IN ('pending', 'active')"
            live = db.execute(query).fetchone()[0]
        if not live:
            break
        time.sleep(0.2)
    print(f"{label}: {n} jobs, state {status['state']}, {instances} instances; "
          f"submit -> first job started {first_start - submitted:.1f}s; "
          f"first start -> last end {last_end - first_start:.1f}s "
          f"({n / (last_end - first_start):.0f} jobs/s); "
          f"last end -> pool at 0 {time.time() - last_end:.1f}s (idle_seconds 3)", flush=True)


if __name__ == "__main__":
    sys.exit(main())
