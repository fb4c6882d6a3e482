"""Where SLURM commands run: on this machine (a subprocess) or on the login node over SSH (asyncssh).

Both take an argv and optional stdin and return the exit code and output; neither goes through a local shell.
Over SSH the argv is quoted for the remote shell and prefixed with `env K=V` for the configured variables.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit

import asyncssh

from corral.errors import CorralError
from corral.providers.slurm.options import SshLogin

log = logging.getLogger("corral.providers.slurm")


class SlurmUnavailable(CorralError):
    """A SLURM command could not be run (no such command, login node unreachable, timeout)."""

    status_code = 503


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def describe(self) -> str:
        detail = (self.stderr or self.stdout).strip().splitlines()
        return f"`{' '.join(self.argv[:2])}` exited with {self.returncode}: {detail[-1] if detail else ''}"


class CommandRunner(Protocol):
    where: str  # "local" or "ssh://user@host:port", for messages

    async def run(
        self, argv: Sequence[str], *, stdin: str | None = None, timeout: float = 60.0
    ) -> CommandResult:
        ...

    async def worker_url(self, driver_url: str) -> str:
        """The driver's URL as the SLURM nodes see it (through a tunnel when remote)."""
        ...

    async def close(self) -> None:
        ...


class LocalRunner:
    where = "local"

    def __init__(self, env: dict[str, str]) -> None:
        self.env = {**os.environ, **env}

    async def run(
        self, argv: Sequence[str], *, stdin: str | None = None, timeout: float = 60.0
    ) -> CommandResult:
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, env=self.env,
                stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
            )
        except OSError as exc:
            raise SlurmUnavailable(f"cannot run {argv[0]!r} on this machine: {exc}") from None
        try:
            data = stdin.encode() if stdin is not None else None
            out, err = await asyncio.wait_for(proc.communicate(data), timeout)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
            raise SlurmUnavailable(f"`{' '.join(argv[:2])}` did not answer in {timeout:.0f}s") from None
        return CommandResult(tuple(argv), proc.returncode or 0, out.decode(errors="replace"),
                             err.decode(errors="replace"))

    async def worker_url(self, driver_url: str) -> str:
        return driver_url  # the nodes share this machine's network

    async def close(self) -> None:
        return None


class SshRunner:
    """One SSH connection to the login node, opened on first use and again after it drops; it also carries
    the reverse tunnel (a port on the login node forwarded to the driver) that workers use to call home."""

    def __init__(self, login: SshLogin, env: dict[str, str]) -> None:
        self.login = login
        self.env = env
        self.where = f"ssh://{login.user + '@' if login.user else ''}{login.host}:{login.port}"
        self._conn: asyncssh.SSHClientConnection | None = None
        self._lock = asyncio.Lock()
        self._driver: tuple[str, int] | None = None  # where the tunnel leads
        self._tunnel_port = login.tunnel_port
        self._listener: asyncssh.SSHListener | None = None

    async def _connection(self) -> asyncssh.SSHClientConnection:
        """The live connection (reconnecting if it dropped), with the tunnel open once a driver is known."""
        async with self._lock:
            if self._conn is None or self._conn.is_closed():
                self._conn = await self._connect()
                self._listener = None
            if self._driver is not None and self._listener is None:
                await self._forward(self._conn)
            return self._conn

    async def _connect(self) -> asyncssh.SSHClientConnection:
        login = self.login
        extra: dict[str, object] = {}
        if not login.check_host_key:
            extra["known_hosts"] = None  # the operator turned host key checking off
        elif login.known_hosts:
            extra["known_hosts"] = os.path.expanduser(login.known_hosts)
        if login.key:
            extra["client_keys"] = [os.path.expanduser(login.key)]
        try:
            return await asyncio.wait_for(asyncssh.connect(
                login.host, login.port, username=login.user, keepalive_interval=15,
                keepalive_count_max=3, **extra,  # type: ignore[arg-type]
            ), login.connect_timeout)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            raise SlurmUnavailable(f"cannot reach the SLURM login node {self.where}: {exc!r}") from None

    async def _forward(self, conn: asyncssh.SSHClientConnection) -> None:
        assert self._driver is not None
        try:
            self._listener = await conn.forward_remote_port(
                self.login.tunnel_bind, self._tunnel_port, self._driver[0], self._driver[1]
            )
        except (OSError, asyncssh.Error) as exc:
            raise SlurmUnavailable(
                f"cannot open the tunnel {self.login.tunnel_bind}:{self._tunnel_port} on {self.where}: "
                f"{exc!r}"
            ) from None
        # Keep the port: pilots already running call it, and find the driver again after a reconnect.
        self._tunnel_port = self._listener.get_port()
        log.info("tunnel %s:%d on %s -> %s:%d", self.login.tunnel_bind, self._tunnel_port, self.where,
                 *self._driver)

    async def worker_url(self, driver_url: str) -> str:
        parts = urlsplit(driver_url)
        host = parts.hostname or "127.0.0.1"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        if self._driver != (host, port):
            if self._listener is not None:
                self._listener.close()  # the driver moved: the tunnel follows it
                self._listener = None
            self._driver = (host, port)
        await self._connection()
        tunnel_host = self.login.tunnel_host or self.login.tunnel_bind
        if tunnel_host in ("0.0.0.0", ""):
            tunnel_host = "127.0.0.1"
        return urlunsplit((parts.scheme, f"{tunnel_host}:{self._tunnel_port}", parts.path, "", ""))

    async def run(
        self, argv: Sequence[str], *, stdin: str | None = None, timeout: float = 60.0
    ) -> CommandResult:
        conn = await self._connection()
        prefix = ["env", *(f"{k}={v}" for k, v in self.env.items())] if self.env else []
        command = shlex.join([*prefix, *argv])
        try:
            done = await asyncio.wait_for(conn.run(command, input=stdin, check=False), timeout)
        except TimeoutError:
            what = " ".join(argv[:2])
            raise SlurmUnavailable(f"`{what}` on {self.where} did not answer in {timeout:.0f}s") from None
        except (OSError, asyncssh.Error) as exc:
            conn.close()  # reconnect on the next call
            raise SlurmUnavailable(f"`{' '.join(argv[:2])}` on {self.where} failed: {exc!r}") from None
        code = done.exit_status if done.exit_status is not None else 255
        return CommandResult(tuple(argv), code, _text(done.stdout), _text(done.stderr))

    async def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            with contextlib.suppress(Exception):
                await self._conn.wait_closed()
            self._conn = None


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)
