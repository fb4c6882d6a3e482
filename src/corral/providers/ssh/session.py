"""One SSH connection to one host: the reverse tunnel to the driver, the worker's venv, its workers.

Each worker runs under a small launcher as the command of an SSH channel: when the channel closes
(the instance is deleted, the driver dies, the connection breaks), the launcher's stdin ends and it stops
the worker, so no worker outlives the connection that feeds it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import shlex
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncssh

from corral.errors import CorralError
from corral.providers.ssh.bundle import WorkerBundle
from corral.providers.ssh.options import JumpHost, SshHost, SshOptions, host_key_hint

log = logging.getLogger("corral.providers.ssh")

# Runs on the host: start the worker in its own session, stop it when our stdin (the SSH channel) ends.
# The token comes as the first line of stdin, so it never shows in the host's process list.
LAUNCHER = r"""
import json, os, signal, subprocess, sys, threading
token = sys.stdin.readline().strip()
site = json.loads(sys.stdin.readline() or "{}")
log = open(sys.argv[1], "ab")
env = {**os.environ, **site, "CORRAL_WORKER_TOKEN": token}
p = subprocess.Popen(sys.argv[2:], stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                     env=env)
print(p.pid, flush=True)
def stop(*_):
    try:
        p.send_signal(signal.SIGTERM)
        p.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(p.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
def watch():
    sys.stdin.buffer.read()
    stop()
threading.Thread(target=watch, daemon=True).start()
signal.signal(signal.SIGTERM, stop)
signal.signal(signal.SIGHUP, stop)
sys.exit(p.wait())
"""

# Runs on the host: make the venv for this bundle unless it is there; one installer at a time per work dir.
INSTALL = r"""
set -eu
D=$1; V="$D/venv-$2"; PY=$3
mkdir -p "$D"
if [ "${4:-}" = check ]; then [ -f "$V/.complete" ] && echo ready || echo missing; exit 0; fi
exec 9>"$D/.install.lock"
flock 9
if [ -f "$V/.complete" ]; then cat >/dev/null; echo reused; exit 0; fi
rm -rf "$V" "$V.wheels"; mkdir -p "$V.wheels"
tar -x -C "$V.wheels"
"$PY" -m venv "$V"
"$V/bin/python" -m pip install -q --no-index --find-links "$V.wheels" corral
rm -rf "$V.wheels"
touch "$V/.complete"
echo installed
"""


class HostUnreachable(CorralError):
    pass


@dataclass
class RemoteWorker:
    name: str
    process: asyncssh.SSHClientProcess[Any]
    pid: int
    started: float


def _client_options(
    *, user: str | None, key: str | None, check: bool, known_hosts: str | None, options: SshOptions
) -> dict[str, Any]:
    return {
        "username": user,
        "client_keys": [str(Path(key).expanduser())] if key else (),
        "agent_path": None,
        "known_hosts": (known_hosts or ()) if check else None,
        "keepalive_interval": options.keepalive_interval,
        "keepalive_count_max": options.keepalive_count_max,
        "connect_timeout": options.connect_timeout,
    }


async def _connect_jump(jump: JumpHost, options: SshOptions) -> asyncssh.SSHClientConnection:
    return await asyncssh.connect(
        jump.address, jump.port, proxy_command=jump.proxy_command,
        **_client_options(user=jump.user, key=jump.key, check=jump.check_host_key,
                          known_hosts=jump.known_hosts, options=options),
    )


class HostSession:
    def __init__(self, host: SshHost, options: SshOptions) -> None:
        self.host = host
        self.options = options
        self.conn: asyncssh.SSHClientConnection | None = None
        self._jump: asyncssh.SSHClientConnection | None = None
        self.tunnel_port = 0
        self.lost: str | None = None  # why the connection ended
        self.workers: dict[str, RemoteWorker] = {}
        self.home = ""
        self._watch: asyncio.Task[None] | None = None
        self._venv_lock = asyncio.Lock()
        self._venv_ready = ""  # digest of the bundle known installed on this host

    @property
    def alive(self) -> bool:
        return self.conn is not None and self.lost is None

    async def connect(self, driver_url: str, *, tunnel_port: int = 0) -> None:
        """Connect and open the reverse tunnel (on `tunnel_port` of the host when given: a worker left
        running by an earlier connection keeps calling it)."""
        h = self.host
        try:
            tunnel = await _connect_jump(h.jump, self.options) if h.jump else None
            self._jump = tunnel
            self.conn = await asyncssh.connect(
                h.address, h.port, tunnel=tunnel, proxy_command=h.proxy_command,
                **_client_options(user=h.user, key=h.key, check=h.check_host_key,
                                  known_hosts=h.known_hosts, options=self.options),
            )
            url = urlsplit(driver_url)
            # The worker calls 127.0.0.1:<port> on its host; sshd carries it back to the driver (NAT-proof).
            listener = await self.conn.forward_remote_port(
                "127.0.0.1", tunnel_port, url.hostname or "127.0.0.1", url.port or 80
            )
            self.tunnel_port = listener.get_port()
            timeout = self.options.connect_timeout
            home = await self.conn.run('printf %s "$HOME"', check=True, timeout=timeout)
            self.home = str(home.stdout)
        except (OSError, asyncssh.Error, TimeoutError) as exc:
            await self.close()
            hint = f"; {host_key_hint(h)}" if isinstance(exc, asyncssh.HostKeyNotVerifiable) else ""
            raise HostUnreachable(f"host {h.name} ({h.address}:{h.port}) unreachable: {exc}{hint}") from exc
        self._watch = asyncio.create_task(self._watch_connection(), name=f"ssh-{h.name}")

    async def _watch_connection(self) -> None:
        assert self.conn is not None
        await self.conn.wait_closed()
        if self.lost is None:
            self.lost = f"host {self.host.name} unreachable: the SSH connection ended"
            log.warning("%s", self.lost)

    @property
    def work_dir(self) -> str:
        d = self.host.work_dir
        return d if d.startswith("/") else f"{self.home}/{d}"

    async def ensure_venv(self, bundle: WorkerBundle) -> str:
        """The venv's python on the host, installing the bundle when this version is not there yet."""
        async with self._venv_lock:  # instances created together on one host upload the bundle once
            if self._venv_ready != bundle.digest:
                await self._install(bundle)
                self._venv_ready = bundle.digest
        return f"{self.work_dir}/venv-{self._venv_key(bundle)}/bin/python"

    def _venv_key(self, bundle: WorkerBundle) -> str:
        """The bundle's version and the host's Python: changing a host's `python` makes a new venv."""
        return f"{bundle.digest}-{hashlib.sha256(self.host.python.encode()).hexdigest()[:8]}"

    async def _install(self, bundle: WorkerBundle) -> None:
        assert self.conn is not None
        args = [self.work_dir, self._venv_key(bundle), self.host.python]
        script = f"sh -c {shlex.quote(INSTALL)} install {shlex.join(args)}"
        state = await self.conn.run(f"{script} check", check=True, timeout=self.options.connect_timeout)
        if str(state.stdout).strip() != "ready":
            started = time.monotonic()
            result = await self.conn.run(
                script, input=bundle.tar, encoding=None, timeout=self.options.command_timeout
            )
            if result.exit_status != 0:
                err = result.stderr.decode(errors="replace") if isinstance(result.stderr, bytes) else ""
                raise HostUnreachable(f"installing the worker on {self.host.name} failed: {err[-1500:]}")
            log.info("worker venv on %s: %s in %.1fs (bundle %d bytes)", self.host.name,
                     (result.stdout or b"").decode().strip() if isinstance(result.stdout, bytes) else "",
                     time.monotonic() - started, bundle.size)

    async def start_worker(
        self, python: str, *, name: str, token: str, cores: float, memory_bytes: int, gpu_ids: list[str],
        runtime: str, worker_env: Mapping[str, str] | None = None,
    ) -> RemoteWorker:
        """`worker_env`: what the worker takes from the server's settings (base.worker_environment)."""
        assert self.conn is not None
        logs = f"{self.work_dir}/logs"
        env = {"CORRAL_HOME": f"{self.work_dir}/home", "CORRAL_WORKER_GPUS": ",".join(gpu_ids),
               "CORRAL_WORKER_ADDRESS": self.host.address}  # services' endpoints: not the tunnel's loopback
        worker = [
            python, "-m", "corral", "worker", "--url", f"http://127.0.0.1:{self.tunnel_port}", "--name", name,
            "--cores", str(cores), "--memory", str(memory_bytes), "--runtime", runtime,
        ]
        exports = " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items())
        command = (
            f"mkdir -p {shlex.quote(logs)} && {exports} exec {shlex.quote(python)} "
            f"-c {shlex.quote(LAUNCHER)} {shlex.quote(f'{logs}/{name}.log')} {shlex.join(worker)}"
        )
        process = await self.conn.create_process(command)
        # The token and the site's [jobs] and [images] settings (registry passwords) go through stdin, never
        # a command line other users of the host could read.
        process.stdin.write(token + "\n" + json.dumps(dict(worker_env or {})) + "\n")
        line = await asyncio.wait_for(process.stdout.readline(), self.options.connect_timeout)
        if not str(line).strip().isdigit():
            process.close()
            raise HostUnreachable(f"the worker did not start on {self.host.name}: {line!r}")
        remote = RemoteWorker(name, process, int(str(line).strip()), time.time())
        self.workers[name] = remote
        return remote

    def worker_exited(self, name: str) -> int | None:
        """The worker's launcher exit status once it ended, else None."""
        remote = self.workers.get(name)
        if remote is None:
            return None
        return remote.process.exit_status if remote.process.exit_status is not None else (
            -1 if remote.process.is_closing() else None
        )

    async def stop_worker(self, name: str) -> None:
        remote = self.workers.pop(name, None)
        if remote is None:
            return
        # EOF on the launcher's stdin: it stops the worker (TERM, then KILL after 20 s).
        try:
            remote.process.stdin.write_eof()
            await asyncio.wait_for(remote.process.wait_closed(), 25)
        except (OSError, asyncssh.Error, TimeoutError, BrokenPipeError):
            remote.process.close()

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        for conn in (self.conn, self._jump):
            if conn is not None:
                conn.close()
        self.lost = self.lost or "closed"
