"""Start and drive the fake vast.ai server from tests and bench (a real process on loopback)."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.fakes.vastai.machines import pids_in_namespace_of

ROOT = Path(__file__).resolve().parents[3]


class FakeVastProcess:
    def __init__(
        self,
        directory: Path,
        offers: list[dict[str, Any]],
        *,
        api_key: str = "fake-vast-key",
        delays: dict[str, float] | None = None,
        rate_scale: float = 0.02,
    ) -> None:
        self.dir = directory
        self.api_key = api_key
        self.offers = offers
        self.delays = delays or {}
        self.rate_scale = rate_scale
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def start(self, timeout: float = 30) -> FakeVastProcess:
        missing = [t for t in ("/usr/sbin/sshd", "ip", "unshare", "ssh-keygen") if not shutil.which(t)]
        if missing:
            if os.environ.get("CI") == "true":
                pytest.fail(f"the fake vast.ai needs {missing} (scripts/setup.sh --test installs them)")
            pytest.skip(f"the fake vast.ai needs {missing}")
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "offers.json").write_text(json.dumps(self.offers))
        port_file = self.dir / "port"
        port_file.unlink(missing_ok=True)
        with open(self.dir / "fake.log", "ab") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "tests.fakes.vastai",
                    "--dir",
                    str(self.dir),
                    "--offers",
                    str(self.dir / "offers.json"),
                    "--api-key",
                    self.api_key,
                    "--port-file",
                    str(port_file),
                    "--rate-scale",
                    str(self.rate_scale),
                    "--delays",
                    json.dumps(self.delays),
                ],
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + timeout
        while not port_file.exists():
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"fake vast.ai did not start:\n{self.log_tail()}")
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{port_file.read_text().strip()}"
        return self

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join((self.dir / "fake.log").read_text(errors="replace").splitlines()[-n:])
        except FileNotFoundError:
            return ""

    def control(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        r = httpx.post(f"{self.url}/control/{path}", json=body or {}, timeout=30)
        r.raise_for_status()
        return dict(r.json())

    def faults(self, **body: Any) -> None:
        self.control("faults", body)

    def ledger(self) -> dict[str, Any]:
        r = httpx.get(f"{self.url}/control/ledger", timeout=30)
        r.raise_for_status()
        return dict(r.json())

    def live(self, label_prefix: str = "") -> list[dict[str, Any]]:
        return [
            i
            for i in self.ledger()["instances"]
            if i["destroyed_at"] is None and (i["label"] or "").startswith(label_prefix)
        ]

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        holders = self.dir / "holders"
        if holders.exists():  # what a fake that did not shut down cleanly left: its hosts' processes
            for line in holders.read_text().split():
                holder = int(line)
                inside = pids_in_namespace_of(holder)  # empty unless the holder still holds its namespace
                for pid in [*inside, holder] if inside or _is_holder(holder) else []:
                    with contextlib.suppress(ProcessLookupError):
                        os.kill(pid, signal.SIGKILL)
            holders.unlink()


def _is_holder(pid: int) -> bool:
    """Still our namespace holder (`sleep infinity` in another network namespace), not a reused pid."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().split(b"\0")
        return cmd[:2] == [b"sleep", b"infinity"] and os.readlink(f"/proc/{pid}/ns/net") != os.readlink(
            "/proc/self/ns/net"
        )
    except OSError:
        return False
