"""Job network modes on the host: none, private (own namespace + user-space NAT), host.

`private` is a fresh network namespace with a tap device that slirp4netns NATs to the outside from user
space: the host's interfaces, routes and firewall are untouched, and `--disable-host-loopback` keeps the
host's 127.0.0.0/8 (the Corral API, a local PostgreSQL, the worker) out of reach. `public` is the same
unless the site opts into the host's network (`[jobs] host_network = true`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
from pathlib import Path
from typing import Literal

from corral.errors import CorralError
from corral.runtimes.logcap import read_pipe

# Inside the job's namespace only (slirp4netns: .2 gateway, .3 DNS, .100 the job). Never the host's subnet.
PRIVATE_CIDR = "198.51.100.0/24"
PRIVATE_DNS = "198.51.100.3"
NETWORK_MODES = ("none", "private", "public")

Plumbing = Literal["none", "nat", "host"]


class NetworkError(CorralError):
    pass


def plumbing(mode: str | None, *, default: str, host_network: bool) -> Plumbing:
    """What a job's network mode (None: the site default) means on this worker."""
    chosen = mode or default
    if chosen == "none":
        return "none"
    if chosen == "public" and host_network:
        return "host"
    return "nat"


def find_slirp() -> str:
    path = shutil.which("slirp4netns")
    if path is None:
        raise NetworkError("network 'private' needs slirp4netns (apt-get install slirp4netns)")
    return path


def resolv_conf(scratch: Path) -> Path:
    path = scratch / "resolv.conf"
    path.write_text(f"nameserver {PRIVATE_DNS}\n")
    return path


class Slirp:
    """slirp4netns attached to a running sandbox's network namespace (by the sandbox's pid)."""

    def __init__(self) -> None:
        self.proc: asyncio.subprocess.Process | None = None

    async def attach(self, pid: int, *, sandboxed: bool = True) -> None:
        ready_r, ready_w = os.pipe()
        try:
            extra = ["--enable-sandbox", "--enable-seccomp"] if sandboxed else []
            self.proc = await asyncio.create_subprocess_exec(
                find_slirp(), "--configure", "--mtu=65520", "--disable-host-loopback",
                f"--cidr={PRIVATE_CIDR}", *extra, f"--ready-fd={ready_w}", str(pid), "tap0",
                pass_fds=(ready_w,), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
            )
            os.close(ready_w)
            ready_w = -1
            got = await asyncio.wait_for(read_pipe(ready_r, bool), 10)
            if got != b"1":
                raise NetworkError("slirp4netns could not configure the job's network namespace")
        finally:
            os.close(ready_r)
            if ready_w >= 0:
                os.close(ready_w)

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
