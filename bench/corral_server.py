"""A real `corral server` subprocess configured by CORRAL_* variables and driven over REST."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

from bench.model import BenchError
from bench.paths import ROOT, WORK, kill_group

PG_DIR, PG_PORT = "/tmp/corral-bench-pg", "55532"  # a private cluster, apart from the tests' one
WAIT_SECONDS = 5.0  # how long the server may hold a status request (it answers when the batch completes)


def server_command() -> list[str]:
    """`python -m corral server`, or CORRAL_BENCH_SERVER_CMD (e.g. to measure another build)."""
    override = os.environ.get("CORRAL_BENCH_SERVER_CMD")
    return shlex.split(override) if override else [sys.executable, "-m", "corral", "server"]


def job_spec(
    job_id: int, command: list[str], parents: list[int] | None = None, cpu: str = "0.25"
) -> dict[str, Any]:
    return {
        "job_id": job_id, "process": {"type": "docker", "command": command},
        "in_update_parent_ids": parents or [], "resources": {"cpu": cpu, "memory": "64Mi"},
    }


@dataclass
class CorralServer:
    name: str
    settings: dict[str, str] = field(default_factory=dict)
    database_url: str | None = None
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    token: str = ""
    home: Path = field(init=False)

    def __post_init__(self) -> None:
        self.home = WORK / f"corral-{self.name}-{uuid.uuid4().hex[:8]}"

    def __enter__(self) -> CorralServer:
        self.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def start(self, timeout: float = 60.0) -> None:
        self.home.mkdir(parents=True)
        url_file = self.home / "server.url"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
        env.update({"CORRAL_HOME": str(self.home), "CORRAL_PORT": "0", "CORRAL_URL_FILE": str(url_file),
                    "CORRAL_HOST": "127.0.0.1", "PYTHONPATH": str(ROOT / "src")})
        env.update({f"CORRAL_{k.upper()}": v for k, v in self.settings.items()})
        if self.database_url:
            env["CORRAL_DATABASE_URL"] = self.database_url
        with open(self.home / "server.log", "ab") as out:
            self.proc = subprocess.Popen(server_command(), env=env, stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True, cwd=self.home)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"corral server exited with {self.proc.returncode}: {self.log_tail(3)}")
            if url_file.exists():
                self.url = json.loads(url_file.read_text())["url"]
                self.token = json.loads((self.home / "tokens.json").read_text())["token"]
                return
            time.sleep(0.02)
        raise BenchError(f"corral server did not start in {timeout:.0f}s: {self.log_tail(3)}")

    def stop(self) -> None:
        if self.proc is not None:
            kill_group(self.proc)
        # Local workers run in their own sessions (they outlive a crashed server): stop ours too.
        for pid in self.worker_pids():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)  # a worker leads its session; its jobs go with it
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)

    def worker_pids(self) -> list[int]:
        """Processes started for this server, found by its (unique) CORRAL_HOME."""
        found = []
        for proc in psutil.process_iter(["pid"]):
            if proc.pid == os.getpid():
                continue
            try:
                if proc.environ().get("CORRAL_HOME") == str(self.home):
                    found.append(proc.pid)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        return found

    def log_tail(self, n: int = 5) -> str:
        try:
            lines = (self.home / "server.log").read_text(errors="replace").splitlines()
        except FileNotFoundError:
            return "(no log)"
        return " | ".join(line.strip() for line in lines[-n:])

    def rss_bytes(self) -> int:
        """Resident memory of the server process alone (not its local workers)."""
        assert self.proc is not None
        return int(psutil.Process(self.proc.pid).memory_info().rss)

    def client(self, timeout: float = 120.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"Authorization": f"Bearer {self.token}"},
                            timeout=timeout, limits=httpx.Limits(max_connections=8))

    # ---- REST helpers

    def submit_fast(self, c: httpx.Client, jobs: list[dict[str, Any]]) -> int:
        spec = {"billing_project": "default", "token": uuid.uuid4().hex, "n_jobs": len(jobs)}
        r = c.post("/api/v1/batches/create-fast", json={"batch": spec, "bunch": jobs})
        _check(r)
        return int(r.json()["id"])

    def run_batch(self, c: httpx.Client, jobs: list[dict[str, Any]], *, timeout: float, poll: float = 0.02,
                  bunches: bool = False, stall: float = 30.0) -> float:
        """Submit `jobs` (create-fast, or create + bunches + commit), wait until the batch completes and
        check every job succeeded; returns the seconds from submission to completion."""
        t0 = time.perf_counter()
        batch_id = self.submit_bunches(c, jobs) if bunches else self.submit_fast(c, jobs)
        status = self.wait(c, batch_id, timeout=timeout, poll=poll, stall=stall)
        elapsed = time.perf_counter() - t0
        all_succeeded(status)
        return elapsed

    def submit_bunches(self, c: httpx.Client, jobs: list[dict[str, Any]], bunch: int = 10_000) -> int:
        """create + bunches of jobs + commit: how a client sends a big batch."""
        r = c.post("/api/v1/batches/create",
                   json={"billing_project": "default", "token": uuid.uuid4().hex, "n_jobs": len(jobs)})
        _check(r)
        batch_id = int(r.json()["id"])
        for start in range(0, len(jobs), bunch):
            body = _dumps(jobs[start:start + bunch])
            r = c.post(f"/api/v1/batches/{batch_id}/updates/1/jobs/create", content=body,
                       headers={"Content-Type": "application/json"})
            _check(r)
        _check(c.patch(f"/api/v1/batches/{batch_id}/updates/1/commit"))
        return batch_id

    def batch(self, c: httpx.Client, batch_id: int, wait: float = 0.0) -> dict[str, Any]:
        """The batch's status; with `wait`, once it completes or after `wait` seconds, as the library's
        wait asks it (GET /api/v1/batches/{id}?wait=S)."""
        r = c.get(f"/api/v1/batches/{batch_id}", params={"wait": wait} if wait > 0 else None)
        _check(r)
        return dict(r.json())

    def wait(self, c: httpx.Client, batch_id: int, timeout: float, poll: float = 0.02,
             stall: float = 30.0) -> dict[str, Any]:
        """Wait until the batch is complete, as the library does: the server answers when it completes (or
        after WAIT_SECONDS); `poll` between requests only if it answered at once (a server that does not
        wait). Give up after `timeout`, or `stall` seconds without progress."""
        deadline = time.monotonic() + timeout
        done, progressed = -1, time.monotonic()
        while True:
            asked = max(0.0, min(WAIT_SECONDS, deadline - time.monotonic()))
            sent = time.monotonic()
            status = self.batch(c, batch_id, wait=asked)
            if status["complete"]:
                return status
            now = time.monotonic()
            if status["n_completed"] != done:
                done, progressed = status["n_completed"], now
            if now > deadline or now - progressed > stall:
                why = f"after {timeout:.0f}s" if now > deadline else f"(no progress for {stall:.0f}s)"
                raise BenchError(f"batch {batch_id} not complete {why}: {done}/{status['n_jobs']} done; "
                                 f"server log: {self.log_tail(2)}")
            if now - sent < asked / 2:
                time.sleep(poll)


def all_succeeded(status: dict[str, Any]) -> None:
    if status["n_succeeded"] != status["n_jobs"]:
        raise BenchError(f"batch {status['id']}: only {status['n_succeeded']}/{status['n_jobs']} jobs "
                         f"succeeded ({status['n_failed']} failed, {status['n_cancelled']} cancelled)")


def _check(r: httpx.Response) -> None:
    if r.status_code >= 300:
        raise BenchError(f"{r.request.method} {r.request.url.path}: HTTP {r.status_code} {r.text[:200]}")


def _dumps(value: Any) -> bytes:
    import orjson

    return orjson.dumps(value)


# ---- PostgreSQL: a private cluster and a fresh database per server

def postgres_start() -> tuple[str, bool]:
    """Start (or reuse) the bench's PostgreSQL; returns its DSN and whether this call started it."""
    import socket

    with socket.socket() as probe:
        was_up = probe.connect_ex(("127.0.0.1", int(PG_PORT))) == 0
    env = {**os.environ, "CORRAL_PG_DIR": PG_DIR, "CORRAL_PG_PORT": PG_PORT}
    done = subprocess.run([str(ROOT / "scripts/postgres.sh"), "start"], env=env, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise BenchError(f"scripts/postgres.sh start failed: {done.stderr.strip()[-300:]}")
    return done.stdout.strip().splitlines()[-1], not was_up


def postgres_stop() -> None:
    env = {**os.environ, "CORRAL_PG_DIR": PG_DIR, "CORRAL_PG_PORT": PG_PORT}
    subprocess.run([str(ROOT / "scripts/postgres.sh"), "stop"], env=env, capture_output=True, check=False)


def fresh_database(dsn: str) -> str:
    """CREATE DATABASE with a new name on the cluster; returns its URL."""
    import asyncpg  # type: ignore[import-untyped]

    name = f"bench_{uuid.uuid4().hex[:12]}"

    async def create() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()

    asyncio.run(create())
    return dsn.rsplit("/", 1)[0] + "/" + name
