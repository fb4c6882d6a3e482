"""PostgreSQL (postgres, as the `postgres` user in the job's own /tmp) and pgbench (Debian: postgresql).

pgbench's per-transaction log gives client-side latencies of every transaction, so percentiles are
computed over the whole run; `load.rate` uses pgbench's own Poisson-distributed schedule (--rate).
"""

from __future__ import annotations

import glob
import os
import re
import subprocess
import tempfile
import time

from corral.sessions.recipe import ClientConfig, ServiceConfig
from corral.sessions.registry import REGISTRY, ClientRun, ClientType, Endpoint, ServiceType, check_params

PG_BIN = "$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"


@REGISTRY.service
class PostgresService(ServiceType):
    name = "postgres"
    description = (
        "a fresh PostgreSQL cluster (trust auth, fsync off) as user postgres; params: shared_buffers"
    )
    scheme = "postgresql"

    def check(self, config: ServiceConfig) -> None:
        check_params(config.params, {"shared_buffers", "max_connections"}, "service")

    def command(self, config: ServiceConfig) -> str:
        buffers = str(config.params.get("shared_buffers") or "128MB")
        conns = int(config.params.get("max_connections") or 200)  # type: ignore[arg-type]
        # PostgreSQL refuses to run as root: as root (older sandboxes) drop to `postgres`; a job user runs it.
        return (
            f"B={PG_BIN}; D=/tmp/pgdata; mkdir -p $D /tmp/pgsock; AS=; "
            'if [ "$(id -u)" = 0 ]; then chown postgres $D /tmp/pgsock; AS="runuser -u postgres --"; '
            # A job user without a passwd entry: PostgreSQL looks itself up, so give it one (nss_wrapper).
            'elif ! getent passwd "$(id -u)" >/dev/null; then '
            'echo "job:x:$(id -u):$(id -g):job:/tmp:/bin/sh" > /tmp/passwd; '
            'echo "job:x:$(id -g):" > /tmp/group; '
            "export LD_PRELOAD=$(ls /usr/lib/*/libnss_wrapper.so | head -1) NSS_WRAPPER_PASSWD=/tmp/passwd "
            "NSS_WRAPPER_GROUP=/tmp/group; fi; "
            "$AS $B/initdb -A trust -U postgres -D $D >/dev/null && "
            # Clients come from other hosts or namespaces (a private network's NAT), not only loopback.
            'echo "host all all all trust" >> $D/pg_hba.conf && '
            "exec $AS $B/postgres -D $D -p $CORRAL_PORT_MAIN -c listen_addresses='*' "
            f"-c unix_socket_directories=/tmp/pgsock -c fsync=off -c shared_buffers={buffers} "
            f"-c max_connections={conns}"
        )

    def probes(self, config: ServiceConfig) -> list[dict[str, object]]:
        return [
            {
                "kind": "exec",
                "command": ["pg_isready", "-h", "127.0.0.1", "-p", "{port.main}", "-U", "postgres"],
            }
        ]


def parse_pgbench_log(paths: list[str]) -> list[tuple[float, float, bool]]:
    """Per-transaction logs: client tx_no latency_us script epoch_s epoch_us -> (end s, latency ms, ok)."""
    out: list[tuple[float, float, bool]] = []
    for path in paths:
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 6:
                    continue
                if parts[2] in ("failed", "skipped"):
                    out.append((float(parts[4]) + float(parts[5]) / 1e6, 0.0, False))
                    continue
                out.append((float(parts[4]) + float(parts[5]) / 1e6, float(parts[2]) / 1000, True))
    return out


@REGISTRY.client
class Pgbench(ClientType):
    name = "pgbench"
    description = "pgbench (TPC-B-like by default); params: scale, select_only, jobs"
    open_loop = True

    def check(self, config: ClientConfig, at: str) -> None:
        super().check(config, at)
        check_params(config.params, {"scale", "select_only", "jobs"}, at)

    def run(self, config: ClientConfig, endpoint: Endpoint, seed: int) -> ClientRun:
        env = {**os.environ, "PGHOST": endpoint.host, "PGPORT": str(endpoint.port), "PGUSER": "postgres"}
        scale = str(config.params.get("scale") or 1)
        init = subprocess.run(
            ["pgbench", "-i", "-q", "-s", scale, "postgres"],
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if init.returncode != 0:
            raise RuntimeError(f"pgbench -i exited {init.returncode}: {init.stderr.strip()[-300:]}")
        run = ClientRun()
        base = [
            "pgbench",
            "-n",
            "-c",
            str(config.load.concurrency or 1),
            "-j",
            str(config.params.get("jobs") or 1),
            "--random-seed",
            str(seed),
        ]
        if config.params.get("select_only"):
            base.append("-S")
        if config.load.rate is not None:
            base += ["--rate", str(config.load.rate)]
        if config.warmup.duration or config.warmup.requests:
            t0 = time.monotonic()
            subprocess.run(
                [*base, "-T", str(max(1, round(config.warmup.duration or 1))), "postgres"],
                env=env,
                capture_output=True,
                text=True,
                timeout=600,
            )
            run.warmup = {"seconds": round(time.monotonic() - t0, 3)}
        seconds = config.stop.min_duration
        with tempfile.TemporaryDirectory() as tmp:
            while True:
                for old in glob.glob(f"{tmp}/pgb*"):
                    os.unlink(old)
                out = subprocess.run(
                    [
                        *base,
                        "-T",
                        str(max(1, round(seconds))),
                        "-l",
                        "--log-prefix",
                        f"{tmp}/pgb",
                        "postgres",
                    ],
                    env=env,
                    capture_output=True,
                    text=True,
                    timeout=seconds + 120,
                )
                if out.returncode not in (0, 2):
                    raise RuntimeError(f"pgbench exited {out.returncode}: {out.stderr.strip()[-300:]}")
                rows = parse_pgbench_log(glob.glob(f"{tmp}/pgb*"))
                if len(rows) >= config.stop.min_requests or seconds >= config.stop.max_duration:
                    break
                seconds = min(
                    config.stop.max_duration,
                    seconds * min(20.0, 1.2 * config.stop.min_requests / max(len(rows), 1)),
                )
        if rows:
            first = min(end - lat / 1000 for end, lat, _ in rows)
            run.samples = [(end - lat / 1000 - first, lat, ok, {}) for end, lat, ok in rows]
        m = re.search(r"number of failed transactions: (\d+)", out.stdout)
        run.tool_version = "pgbench"
        if m and not rows:
            run.failures = int(m.group(1))
        return run
