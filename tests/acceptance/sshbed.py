"""SSH hosts for tests (scripts/sshd.sh) and instance-collection configs that use them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "sshd.sh"


class SshTestbed:
    def __init__(self, directory: Path, work_root: Path) -> None:
        self.dir = directory
        self.work_root = work_root  # hosts share this machine's disk: one work dir (and venv) per host name
        self.info: dict[str, Any] = json.loads((directory / "testbed.json").read_text())

    def _auth(self) -> dict[str, Any]:
        return {"user": self.info["user"], "key": self.info["key"], "known_hosts": self.info["known_hosts"]}

    def loopback_host(self, name: str, **extra: Any) -> dict[str, Any]:
        lb = self.info["loopback"]
        return {"name": name, "address": lb["address"], "port": lb["port"], **self._auth(),
                "work_dir": str(self.work_root / "shared"), **extra}

    def namespace_host(self, name: str, **extra: Any) -> dict[str, Any]:
        host = next(h for h in self.info["hosts"] if h["name"] == name)
        jump = {**self.info["jump"], **self._auth()}
        return {"name": name, "address": host["address"], "port": host["port"], **self._auth(), "jump": jump,
                "work_dir": str(self.work_root / "shared"), **extra}

    def cut(self, name: str) -> None:
        subprocess.run([str(SCRIPT), "cut", str(self.dir), name], check=True)

    def restore(self, name: str) -> None:
        subprocess.run([str(SCRIPT), "restore", str(self.dir), name], check=True)


def start_testbed(directory: Path, work_root: Path, n_hosts: int = 2) -> SshTestbed:
    missing = [tool for tool in ("/usr/sbin/sshd", "ip", "unshare") if not shutil.which(tool)]
    if missing:
        if os.environ.get("CI") == "true":
            pytest.fail(f"sshd tests need {missing} (scripts/setup.sh --test installs them)")
        pytest.skip(f"sshd tests need {missing}")
    subprocess.run([str(SCRIPT), "start", str(directory), str(n_hosts)], check=True, capture_output=True)
    return SshTestbed(directory, work_root)


def stop_testbed(testbed: SshTestbed) -> None:
    subprocess.run([str(SCRIPT), "stop", str(testbed.dir)], check=False)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {toml_value(v)}" for k, v in value.items()) + " }"
    raise TypeError(value)


def collections_toml(collections: list[dict[str, Any]]) -> str:
    """[[instance_collections]] tables (inline tables for nested values)."""
    out = []
    for col in collections:
        out.append("[[instance_collections]]")
        out.extend(f"{k} = {toml_value(v)}" for k, v in col.items())
        out.append("")
    return "\n".join(out)
