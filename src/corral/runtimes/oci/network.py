"""Network modes: none (own empty namespace), private (own namespace, outbound NAT by slirp4netns in user
space, so the host's interfaces, routes and firewall are untouched), public (the host's network)."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import shutil
from pathlib import Path
from typing import Any

from corral.runtimes.oci.bundle import bind

# Inside the job's namespace only (slirp4netns: .2 gateway, .3 DNS, .100 the job). Never the host's subnet.
PRIVATE_CIDR = "198.51.100.0/24"
PRIVATE_DNS = "198.51.100.3"
NETNS_DIR = Path("/run/netns")


class NetworkError(Exception):
    pass


class PrivateNetwork:
    """A named network namespace with a tap device NATed by slirp4netns (no host loopback access)."""

    def __init__(self, key: str, scratch: Path) -> None:
        self.name = "corral-" + hashlib.sha256(key.encode()).hexdigest()[:12]
        self.scratch = scratch
        self.slirp: asyncio.subprocess.Process | None = None

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.name

    async def start(self) -> None:
        slirp = shutil.which("slirp4netns")
        if slirp is None:
            raise NetworkError("network 'private' needs slirp4netns (apt-get install slirp4netns)")
        await _ip("netns", "add", self.name)
        ready_r, ready_w = os.pipe()
        try:
            self.slirp = await asyncio.create_subprocess_exec(
                slirp, "--configure", "--mtu=65520", "--disable-host-loopback", f"--cidr={PRIVATE_CIDR}",
                "--netns-type=path", f"--ready-fd={ready_w}", str(self.path), "tap0",
                pass_fds=(ready_w,), stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
            )
            os.close(ready_w)
            ready_w = -1
            got = await asyncio.wait_for(asyncio.to_thread(os.read, ready_r, 1), 10)
            if got != b"1":
                raise NetworkError("slirp4netns could not configure the job's network namespace")
        finally:
            os.close(ready_r)
            if ready_w >= 0:
                os.close(ready_w)

    def mounts(self) -> list[dict[str, Any]]:
        resolv = self.scratch / "resolv.conf"
        resolv.write_text(f"nameserver {PRIVATE_DNS}\n")
        return [bind(resolv, "/etc/resolv.conf", readonly=True)]

    async def stop(self) -> None:
        if self.slirp is not None and self.slirp.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.slirp.kill()
            await self.slirp.wait()
        with contextlib.suppress(NetworkError):
            await _ip("netns", "del", self.name)


def public_mounts() -> list[dict[str, Any]]:
    resolv = Path("/etc/resolv.conf")
    return [bind(resolv.resolve(), "/etc/resolv.conf", readonly=True)] if resolv.exists() else []


async def _ip(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        shutil.which("ip") or "/sbin/ip", *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {err.decode(errors='replace').strip()}")
