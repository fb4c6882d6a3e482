"""Whole-system harness: a real `corral server` process with real local worker processes."""

from __future__ import annotations

import json
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


@dataclass
class RunningServer:
    home: Path
    env: dict[str, str]
    proc: subprocess.Popen[bytes] | None = None
    url: str = ""
    token: str = ""
    admin_token: str = ""
    log: Path = field(init=False)

    def __post_init__(self) -> None:
        self.log = self.home / "server.log"

    @property
    def url_file(self) -> Path:
        return self.home / "server.url"

    def start(self, timeout: float = 60.0) -> None:
        self.start_with(Path(sys.executable), timeout)

    def start_with(self, python: Path, timeout: float = 60.0) -> None:
        """Start the server with this interpreter (a user's venv) in the current directory."""
        self.url_file.unlink(missing_ok=True)
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(python), "-m", "corral", "server"],
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log_tail()}")
            if self.url_file.exists():
                self.url = json.loads(self.url_file.read_text())["url"]
                tokens = json.loads((self.home / "tokens.json").read_text())
                self.token, self.admin_token = tokens["token"], tokens["admin_token"]
                return
            time.sleep(0.05)
        raise RuntimeError(f"server did not start in {timeout}s:\n{self.log_tail()}")

    def log_tail(self, n: int = 60) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return "(no log)"

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None and bool(self.url)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for proc in worker_processes(self.home):
            proc.kill()

    def client(self, token: str | None = None) -> httpx.Client:
        return httpx.Client(
            base_url=self.url, headers={"Authorization": f"Bearer {token or self.token}"}, timeout=30
        )

    # ---- helpers over the REST API

    def submit(self, jobs: list[dict[str, Any]], *, token: str | None = None, **batch: Any) -> int:
        spec = {"billing_project": "default", "token": uuid.uuid4().hex, "n_jobs": len(jobs), **batch}
        with self.client(token) as c:
            r = c.post("/api/v1/batches/create-fast", json={"batch": spec, "bunch": jobs})
            assert r.status_code == 200, r.text
            return int(r.json()["id"])

    def batch(self, batch_id: int) -> dict[str, Any]:
        with self.client() as c:
            r = c.get(f"/api/v1/batches/{batch_id}")
            assert r.status_code == 200, r.text
            return dict(r.json())

    def wait(self, batch_id: int, timeout: float = 120.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.batch(batch_id)
            if status["complete"]:
                return status
            time.sleep(0.1)
        raise AssertionError(f"batch {batch_id} not complete after {timeout}s: {status}\n{self.log_tail()}")

    def jobs(self, batch_id: int) -> dict[int, dict[str, Any]]:
        out: dict[int, dict[str, Any]] = {}
        last: int | None = None
        with self.client() as c:
            while True:
                params: dict[str, Any] = {"limit": 1000}
                if last is not None:
                    params["last_job_id"] = last
                page = c.get(f"/api/v1/batches/{batch_id}/jobs", params=params).json()
                for job in page["jobs"]:
                    out[job["job_id"]] = job
                last = page.get("last_job_id")
                if not page["jobs"] or last is None:
                    return out

    def completed_when_first_finishes(self, *batch_ids: int) -> list[int]:
        """Each batch's n_completed at the moment the first of them completes (fair-share checks)."""
        while True:
            statuses = [self.batch(b) for b in batch_ids]
            if any(s["complete"] for s in statuses):
                return [int(s["n_completed"]) for s in statuses]
            time.sleep(0.05)

    def job(self, batch_id: int, job_id: int) -> dict[str, Any]:
        with self.client() as c:
            r = c.get(f"/api/v1/batches/{batch_id}/jobs/{job_id}")
            assert r.status_code == 200, r.text
            return dict(r.json())


def worker_processes(home: Path) -> list[psutil.Process]:
    """Worker processes started for this server (found by their CORRAL_HOME)."""
    found = []
    for proc in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmd = proc.info["cmdline"] or []
            env = proc.info["environ"] or {}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if "worker" in cmd and "corral" in " ".join(cmd) and env.get("CORRAL_HOME") == str(home):
            found.append(proc)
    return found


def job(command: str, job_id: int, parents: list[int] | None = None, **extra: Any) -> dict[str, Any]:
    """A job spec running `command` in bash."""
    return {
        "job_id": job_id,
        "process": {"type": "docker", "command": ["/bin/bash", "-c", command]},
        "in_update_parent_ids": parents or [],
        "resources": {"cpu": extra.pop("cpu", "0.25"), "memory": extra.pop("memory", "64Mi")},
        **extra,
    }


