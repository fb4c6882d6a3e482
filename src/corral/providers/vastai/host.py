"""SSH steps on a rented host: log in (retrying while sshd comes up), check its GPUs, start the worker.

The worker runs detached (its own session, token in a 0600 file on the host): a rented host keeps running
its jobs while the server restarts, and the new server adopts it by reconnecting the reverse tunnel on the
same port. It ends when the instance is destroyed.
"""

from __future__ import annotations

import asyncio
import shlex
import time
from collections.abc import Mapping
from typing import Any

import asyncssh

from corral.errors import CorralError
from corral.providers.ssh.options import SshHost, SshOptions
from corral.providers.ssh.session import HostSession, HostUnreachable


class BringUpError(CorralError):
    """A step of bringing up a rented host failed; the host is destroyed and its machine bad-listed."""


RUN_SCRIPT = """#!/bin/sh
echo $$ > {pid_file}
export CORRAL_HOME={home} CORRAL_WORKER_GPUS={gpus}{policy}
CORRAL_WORKER_TOKEN=$(cat {token_file}); export CORRAL_WORKER_TOKEN
exec {python} -m corral worker --url http://127.0.0.1:{port} --name {name} --cores {cores} \\
  --memory {memory} --runtime {runtime}
"""


async def connect(
    host: SshHost, options: SshOptions, driver_url: str, *, deadline: float, tunnel_port: int = 0
) -> HostSession:
    """Log in, retrying until `deadline` (monotonic): sshd of a new instance answers a little after
    `running`, and a proxy may drop the first connections."""
    last = ""
    while True:
        session = HostSession(host, options)
        try:
            await asyncio.wait_for(
                session.connect(driver_url, tunnel_port=tunnel_port), options.connect_timeout + 5
            )
            return session
        except (HostUnreachable, TimeoutError) as exc:
            await session.close()
            last = str(exc) or "timed out"
        if time.monotonic() >= deadline:
            raise BringUpError(f"SSH to {host.address}:{host.port} never became ready: {last}")
        await asyncio.sleep(min(0.5, max(0.1, deadline - time.monotonic())))


async def check_gpus(
    session: HostSession, want_count: int, want_name: str | None, timeout: float
) -> list[str]:
    """The GPU names nvidia-smi reports; BringUpError when they do not match the offer."""
    assert session.conn is not None
    if want_count <= 0:
        return []
    try:
        result = await session.conn.run("nvidia-smi --query-gpu=name --format=csv,noheader", timeout=timeout)
    except (OSError, asyncssh.Error) as exc:
        raise BringUpError(f"nvidia-smi could not run: {exc}") from exc
    output = str(result.stdout or "").strip()
    if result.exit_status != 0:
        err = (output or str(result.stderr or "")).strip()[-300:]
        raise BringUpError(f"nvidia-smi failed (exit {result.exit_status}): {err}")
    names = [line.strip() for line in output.splitlines() if line.strip()]
    if len(names) != want_count:
        raise BringUpError(f"the offer has {want_count} GPUs, nvidia-smi shows {len(names)}: {names}")
    if want_name and any(want_name.lower() not in n.lower() for n in names):
        raise BringUpError(f"the offer has {want_name} GPUs, nvidia-smi shows {names}")
    return names


async def start_worker(
    session: HostSession,
    python: str,
    *,
    name: str,
    token: str,
    cores: float,
    memory_bytes: int,
    gpus: int,
    runtime: str,
    worker_env: Mapping[str, str] | None = None,
) -> int:
    """Start (or restart) the detached worker; its pid. `worker_env`: what the worker takes from the
    server's settings (providers.base.worker_environment: the site's [jobs] policy)."""
    assert session.conn is not None
    d = session.work_dir
    token_file, script = f"{d}/{name}.token", f"{d}/{name}.run.sh"
    text = RUN_SCRIPT.format(
        home=shlex.quote(f"{d}/home"),
        gpus=",".join(str(i) for i in range(gpus)) or "''",
        token_file=shlex.quote(token_file),
        pid_file=shlex.quote(f"{d}/{name}.pid"),
        python=shlex.quote(python),
        port=session.tunnel_port,
        name=shlex.quote(name),
        cores=cores,
        memory=memory_bytes,
        runtime=shlex.quote(runtime),
        policy="".join(f" {k}={shlex.quote(v)}" for k, v in (worker_env or {}).items()),
    )
    q = shlex.quote
    await session.conn.run(
        f"umask 077 && mkdir -p {q(d)}/logs && cat > {q(token_file)}", input=token, check=True, timeout=30
    )
    await session.conn.run(f"cat > {q(script)} && chmod 700 {q(script)}", input=text, check=True, timeout=30)
    return await _launch(session, name)


async def _launch(session: HostSession, name: str) -> int:
    assert session.conn is not None
    d = session.work_dir
    q = shlex.quote
    script, logs, pid_file = q(f"{d}/{name}.run.sh"), q(f"{d}/logs/{name}.log"), q(f"{d}/{name}.pid")
    # setsid -f: the worker leaves the SSH session at once, so the channel closes and it outlives us.
    result = await session.conn.run(
        f"cd {q(d)} || exit 1; rm -f {pid_file}; setsid -f sh {script} >> {logs} 2>&1 < /dev/null; "
        f"for i in $(seq 100); do [ -s {pid_file} ] && break; sleep 0.05; done; cat {pid_file}",
        check=True,
        timeout=30,
    )
    pid = str(result.stdout or "").strip()
    if not pid.isdigit():
        raise BringUpError(f"the worker did not start: {pid!r}")
    return int(pid)


async def ensure_worker(session: HostSession, name: str) -> tuple[int, bool]:
    """After a restart: (pid, restarted) — the worker left running, or a new one from its run script."""
    assert session.conn is not None
    d = session.work_dir
    pid_file = shlex.quote(f"{d}/{name}.pid")
    check = await session.conn.run(
        f'p=$(cat {pid_file} 2>/dev/null) && kill -0 "$p" && echo "$p"', timeout=30
    )
    found = str(check.stdout or "").strip()
    if check.exit_status == 0 and found.isdigit():
        return int(found), False
    return await _launch(session, name), True


def ssh_address(info: dict[str, Any], via: str) -> tuple[str, int] | None:
    """Where to SSH: the proxy (ssh_host:ssh_port) or direct (public_ipaddr + the 22/tcp host port)."""
    if via == "direct":
        ports = (info.get("ports") or {}).get("22/tcp") or []
        if info.get("public_ipaddr") and ports:
            return str(info["public_ipaddr"]), int(ports[0]["HostPort"])
        return None
    if info.get("ssh_host") and info.get("ssh_port"):
        return str(info["ssh_host"]), int(info["ssh_port"])
    return None
