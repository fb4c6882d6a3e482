"""Real daemons for the SLURM tests: the project's 4-node cluster (scripts/slurm-cluster.sh), a private sshd
on loopback acting as the login node, and a real `corral server` whose pilot instances are registered in its
store before it starts (what the autoscaler does in the running server once it lands)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from corral.domain.tokens import hash_token, new_token
from corral.providers.slurm.runners import CommandResult, CommandRunner
from corral.store import instances as instance_store
from corral.store.db import make_engine, migrate

ROOT = Path(__file__).resolve().parents[2]


def need(what: str, detail: str) -> None:
    """A missing component fails in CI and skips elsewhere (tests/conftest.py's rule)."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{what} is required in CI and could not be started: {detail}")
    pytest.skip(f"{what} not available: {detail}")


def start_cluster() -> str:
    """scripts/slurm-cluster.sh start -> SLURM_CONF path."""
    try:
        done = subprocess.run([str(ROOT / "scripts" / "slurm-cluster.sh"), "start"], capture_output=True,
                              text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        need("SLURM (scripts/slurm-cluster.sh)", str(exc))
        raise
    if done.returncode != 0:
        need("SLURM (scripts/slurm-cluster.sh)", done.stderr.strip()[-2000:])
    return done.stdout.strip().splitlines()[-1].split("=", 1)[1]


def slurm(conf: str, *argv: str, check: bool = True) -> str:
    done = subprocess.run(list(argv), env={**os.environ, "SLURM_CONF": conf}, capture_output=True, text=True,
                          timeout=60)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {done.stderr}")
    return done.stdout


def wait_for(what: str, probe: Callable[[], Any], timeout: float = 60.0, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(every)


async def wait_async(what: str, probe: Callable[[], Any], timeout: float = 60.0, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(every)


# ---------------------------------------------------------------- sshd on loopback

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Sshd:
    dir: Path
    port: int
    client_key: Path
    known_hosts: Path
    pid: int = 0

    def login(self, **extra: Any) -> dict[str, Any]:
        """The provider_options.ssh section that reaches this sshd as root."""
        return {"host": "127.0.0.1", "port": self.port, "user": "root", "key": str(self.client_key),
                "known_hosts": str(self.known_hosts), **extra}

    def stop(self) -> None:
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)


def start_sshd(base: Path) -> Sshd:
    """A private sshd: own config, host key and authorized_keys, 127.0.0.1 on a free port (TESTBED.md)."""
    sshd_bin = "/usr/sbin/sshd"
    if not os.path.exists(sshd_bin):
        need("OpenSSH server", "/usr/sbin/sshd is missing (apt-get install openssh-server)")
    base.mkdir(parents=True, exist_ok=True)
    host_key, client_key = base / "host_ed25519", base / "client_ed25519"
    for key in (host_key, client_key):
        if not key.exists():
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    (base / "authorized_keys").write_text(Path(f"{client_key}.pub").read_text())
    port = free_port()
    config = base / "sshd_config"
    config.write_text("\n".join([
        f"Port {port}", "ListenAddress 127.0.0.1", f"HostKey {host_key}",
        f"AuthorizedKeysFile {base / 'authorized_keys'}", f"PidFile {base / 'sshd.pid'}",
        "UsePAM no", "StrictModes no", "PermitRootLogin prohibit-password", "PasswordAuthentication no",
        "Subsystem sftp internal-sftp", "MaxSessions 200", "MaxStartups 100:30:200", "SetEnv SHLVL=1",
        "AllowTcpForwarding yes", "GatewayPorts clientspecified", "LogLevel ERROR",
    ]) + "\n")
    os.makedirs("/run/sshd", exist_ok=True)
    done = subprocess.run([sshd_bin, "-f", str(config), "-E", str(base / "sshd.log")], capture_output=True,
                          text=True)
    if done.returncode != 0:
        need("OpenSSH server", done.stderr.strip())
    host_pub = Path(f"{host_key}.pub").read_text().split()
    known_hosts = base / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_pub[0]} {host_pub[1]}\n")
    pid_file = base / "sshd.pid"
    wait_for("sshd's pid file", pid_file.exists, timeout=10, every=0.05)
    sshd = Sshd(base, port, client_key, known_hosts, int(pid_file.read_text().strip()))

    def accepting() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", port)) == 0

    wait_for("sshd to accept connections", accepting, timeout=10, every=0.05)
    return sshd


# ---------------------------------------------------------------- counting the commands

@dataclass
class CountingRunner:
    """Wraps a real runner and counts the commands it runs, by program name."""

    inner: CommandRunner
    calls: list[tuple[str, ...]] = field(default_factory=list)

    @property
    def where(self) -> str:
        return self.inner.where

    def count(self, program: str) -> int:
        return sum(1 for argv in self.calls if argv[0] == program)

    async def run(
        self, argv: Sequence[str], *, stdin: str | None = None, timeout: float = 60.0
    ) -> CommandResult:
        self.calls.append(tuple(argv))
        return await self.inner.run(argv, stdin=stdin, timeout=timeout)

    async def worker_url(self, driver_url: str) -> str:
        return await self.inner.worker_url(driver_url)

    async def close(self) -> None:
        await self.inner.close()


# ---------------------------------------------------------------- a server that knows our pilots

@dataclass(frozen=True)
class PilotSlot:
    name: str
    token: str


async def register_pilots(home: Path, collection: str, names: Sequence[str], *, cores: float,
                          memory_bytes: int) -> list[PilotSlot]:
    """Create the store under HOME with instances NAMES of COLLECTION (state pending, fresh tokens), as the
    autoscaler records an instance before asking the provider for it. Start the server afterwards."""
    home.mkdir(parents=True, exist_ok=True)
    slots = [PilotSlot(name, new_token()) for name in names]

    engine = make_engine(f"sqlite+aiosqlite:///{home / 'corral.db'}")
    try:
        await migrate(engine)
        async with engine.begin() as conn:
            await instance_store.ensure_collection(conn, collection, kind="pool", provider="slurm", config={})
            for slot in slots:
                await instance_store.create_instance(
                    conn, name=slot.name, collection=collection, cores_mcpu=int(cores * 1000),
                    memory_bytes=memory_bytes, token_hash=hash_token(slot.token),
                    metadata={"provider": "slurm"}, now=time.time(),
                )
    finally:
        await engine.dispose()
    return slots
