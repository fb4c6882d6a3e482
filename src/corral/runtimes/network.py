"""Job network modes on the host: none, private (own namespace + user-space NAT), host.

`private` is a fresh network namespace with a tap device that slirp4netns NATs to the outside from user
space: the host's interfaces, routes and firewall are untouched, and `--disable-host-loopback` keeps the
host's 127.0.0.0/8 (the Corral API, a local PostgreSQL, the worker) out of reach. `public` is the same
unless the site opts into the host's network (`[jobs] host_network = true`).

Private networks are pooled per worker: a named namespace with its slirp4netns is made once (≈ 40 ms)
and handed to one job at a time. A job has no capabilities, so it cannot change the namespace's
addresses, routes or sysctls; its sockets die with its processes; the next job finds it as new.
slirp4netns exits with the worker (`--exit-fd`), and the names are recorded for the cleanup after a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import uuid
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


NETNS_DIR = Path("/run/netns")
NETNS_RECORD = "netns"  # in the work dir: namespaces a dead worker left (worker/cleanup.py deletes them)


async def ip(*args: str) -> None:
    proc = await asyncio.create_subprocess_exec(
        shutil.which("ip") or "/sbin/ip", *args, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    _, err = await proc.communicate()
    if proc.returncode != 0:
        raise NetworkError(f"ip {' '.join(args)}: {err.decode(errors='replace').strip()}")


class PrivateNetwork:
    """A named network namespace with a tap device NATed by slirp4netns (no host loopback access)."""

    def __init__(self) -> None:
        self.name = "corral-" + uuid.uuid4().hex[:12]
        self.slirp: asyncio.subprocess.Process | None = None
        self._exit_w = -1

    @property
    def path(self) -> Path:
        return NETNS_DIR / self.name

    async def start(self) -> None:
        await ip("netns", "add", self.name)
        ready_r, ready_w = os.pipe()
        exit_r, self._exit_w = os.pipe()
        os.set_inheritable(self._exit_w, False)
        try:
            self.slirp = await asyncio.create_subprocess_exec(
                find_slirp(), "--configure", "--mtu=65520", "--disable-host-loopback",
                f"--cidr={PRIVATE_CIDR}", "--enable-seccomp", "--netns-type=path",  # no --enable-sandbox: its
                # unmounts propagate through /run/netns (a shared mount) and drop the namespace's bind
                f"--ready-fd={ready_w}", f"--exit-fd={exit_r}", str(self.path), "tap0",
                pass_fds=(ready_w, exit_r), stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
            )
            os.close(ready_w)
            ready_w = -1
            got = await asyncio.wait_for(read_pipe(ready_r, bool), 10)
            if got != b"1":
                raise NetworkError("slirp4netns could not configure the job's network namespace")
        except BaseException:
            await self.stop()
            raise
        finally:
            os.close(ready_r)
            os.close(exit_r)
            if ready_w >= 0:
                os.close(ready_w)

    async def stop(self) -> None:
        if self._exit_w >= 0:
            os.close(self._exit_w)
            self._exit_w = -1
        if self.slirp is not None and self.slirp.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.slirp.kill()
            await self.slirp.wait()
        with contextlib.suppress(NetworkError):
            await ip("netns", "del", self.name)


class NetworkPool:
    """Private networks, each used by one job at a time and kept for the next."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self._idle: list[PrivateNetwork] = []
        self._all: list[PrivateNetwork] = []

    async def take(self) -> PrivateNetwork:
        if self._idle:
            return self._idle.pop()
        network = PrivateNetwork()
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with open(self.work_dir / NETNS_RECORD, "a") as f:
            f.write(network.name + "\n")
        await network.start()
        self._all.append(network)
        return network

    def give_back(self, network: PrivateNetwork) -> None:
        """After the job's processes are all gone (its cgroup emptied)."""
        if network.slirp is not None and network.slirp.returncode is None:
            self._idle.append(network)
        else:
            self._all.remove(network)
            asyncio.get_running_loop().create_task(network.stop())

    async def close(self) -> None:
        await asyncio.gather(*(n.stop() for n in self._all), return_exceptions=True)
        self._all.clear()
        self._idle.clear()
        (self.work_dir / NETNS_RECORD).unlink(missing_ok=True)


async def delete_recorded(work_dir: Path) -> None:
    """Namespaces a dead worker left (their slirp4netns exited with it)."""
    record = work_dir / NETNS_RECORD
    with contextlib.suppress(OSError):
        for name in record.read_text().split():
            if name.startswith("corral-"):
                with contextlib.suppress(NetworkError):
                    await ip("netns", "del", name)
    record.unlink(missing_ok=True)
