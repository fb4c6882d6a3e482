"""Job network modes on the host: none, private (own namespace + user-space NAT), host.

`private` is a fresh network namespace with a tap device that slirp4netns NATs to the outside from user
space: the host's interfaces, routes and firewall are untouched, and `--disable-host-loopback` keeps the
host's 127.0.0.0/8 (the Corral API, a local PostgreSQL, the worker) out of reach. `public` is the same
unless the site opts into the host's network (`[jobs] host_network = true`).

Private networks are pooled per worker: a named namespace with its slirp4netns is made once (≈ 40 ms)
and handed to one job at a time. A job has no capabilities, so it cannot change the namespace's
addresses, routes or sysctls; its sockets die with its processes; the next job finds it as new.
slirp4netns exits with the worker (`--exit-fd`), and the names are recorded for the cleanup after a crash.

Services on a private network publish their ports: slirp4netns' API socket (`add_hostfwd`) makes it listen
on the instance's port P (all addresses) and forward each connection to P on the job's address in the
namespace, so other jobs reach the service at the instance's address. Only those ports are opened, only
while the service runs (`remove_hostfwd` before the namespace is handed to the next job); the host's
loopback stays out of the job's reach. TCP and IPv4 only (what slirp4netns forwards).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import tempfile
import threading
import uuid
from pathlib import Path
from typing import Any, Literal

from corral.errors import CorralError
from corral.runtimes.libc import enter_netns
from corral.runtimes.logcap import read_pipe
from corral.runtimes.owners import NETNS_OWNERS_DIR, owner, write_record
from corral.runtimes.volume import unmount

log = logging.getLogger(__name__)

# Inside the job's namespace only (slirp4netns: .2 gateway, .3 DNS, .100 the job). Never the host's subnet.
PRIVATE_CIDR = "198.51.100.0/24"
PRIVATE_DNS = "198.51.100.3"
PRIVATE_JOB_ADDRESS = "198.51.100.100"  # the job's own address in its namespace: where forwards lead
API_TIMEOUT = 10.0
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


def delete_namespace(name: str) -> bool:
    """What `ip netns del` does, without an exec: unmount /run/netns/<name> and remove the file."""
    path = NETNS_DIR / name
    try:
        unmount(path)
        path.unlink(missing_ok=True)
    except OSError as exc:
        log.warning("could not delete network namespace %s: %s", name, exc)
        return False
    return True


class PrivateNetwork:
    """A named network namespace with a tap device NATed by slirp4netns (no host loopback access)."""

    def __init__(self, api_dir: Path | None = None) -> None:
        self.name = "corral-" + uuid.uuid4().hex[:12]
        self.slirp: asyncio.subprocess.Process | None = None
        self.api_socket = (api_dir or Path(tempfile.gettempdir())) / f"{self.name}.sock"
        self.forwards: dict[int, int] = {}  # published port -> slirp4netns' forward id
        self._exit_w = -1
        self.owner_file: Path | None = None  # /run/corral-net/<name>: who made it (worker/reaper.py)

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
                f"--api-socket={self.api_socket}",
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

    async def publish(self, ports: tuple[int, ...]) -> None:
        """Forward each port of the instance (all its addresses) to the same port of the job's address."""
        for port in ports:
            reply = await self._api("add_hostfwd", {
                "proto": "tcp", "host_addr": "0.0.0.0", "host_port": port,
                "guest_addr": PRIVATE_JOB_ADDRESS, "guest_port": port,
            })
            self.forwards[port] = int(reply["id"])
            _PUBLISHED[port] = self

    async def unpublish(self) -> None:
        """Close the instance's ports again (slirp4netns stops listening on them)."""
        for port, forward in list(self.forwards.items()):
            await self._api("remove_hostfwd", {"id": forward})
            del self.forwards[port]
            if _PUBLISHED.get(port) is self:
                del _PUBLISHED[port]

    async def _api(self, execute: str, arguments: dict[str, object]) -> dict[str, Any]:
        """One request on slirp4netns' API socket (one connection each; the reply follows our EOF)."""
        request = json.dumps({"execute": execute, "arguments": arguments}).encode()
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_unix_connection(str(self.api_socket)), API_TIMEOUT
            )
            try:
                writer.write(request)
                writer.write_eof()
                raw = await asyncio.wait_for(reader.read(), API_TIMEOUT)
            finally:
                writer.close()
            reply = json.loads(raw)
        except (OSError, TimeoutError, ValueError) as exc:
            raise NetworkError(f"slirp4netns {execute}: {type(exc).__name__}: {exc}") from None
        if not isinstance(reply, dict) or "error" in reply or not isinstance(reply.get("return"), dict):
            error = reply.get("error") if isinstance(reply, dict) else reply
            desc = error.get("desc", error) if isinstance(error, dict) else error
            raise NetworkError(f"slirp4netns {execute} {arguments}: {desc}")
        result: dict[str, Any] = reply["return"]
        return result

    async def stop(self) -> None:
        for port in self.forwards:  # slirp4netns' listeners die with it
            if _PUBLISHED.get(port) is self:
                del _PUBLISHED[port]
        self.forwards.clear()
        if self._exit_w >= 0:
            os.close(self._exit_w)
            self._exit_w = -1
        if self.slirp is not None and self.slirp.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.slirp.kill()
            await self.slirp.wait()
        with contextlib.suppress(NetworkError):
            await ip("netns", "del", self.name)
        if os.path.lexists(self.path):  # `ip` failed, or was killed between its unmount and its unlink
            delete_namespace(self.name)
        self.api_socket.unlink(missing_ok=True)
        if self.owner_file is not None and not os.path.lexists(self.path):
            self.owner_file.unlink(missing_ok=True)  # kept while the namespace is: the reaper's lead to it


# Ports published on this instance by this process's workers (unique per host): the network behind each.
_PUBLISHED: dict[int, PrivateNetwork] = {}


def published_namespace(port: int) -> Path | None:
    """The namespace a published port leads into (None: the port is not forwarded by a private network)."""
    network = _PUBLISHED.get(port)
    return network.path if network is not None else None


async def connect_inside(netns: Path, host: str, port: int, timeout: float) -> None:
    """Open (and close) a TCP connection from inside a network namespace: is something listening there?

    slirp4netns accepts on a published port whether or not the job listens yet, so a probe through the
    forward cannot tell; this one goes where the forward leads. Needs the rights to enter the namespace
    (the worker made it). Raises OSError (ConnectionRefusedError: nothing listens) or TimeoutError.
    """
    sock = await asyncio.to_thread(_socket_in, netns)
    try:
        sock.setblocking(False)
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), timeout)
    finally:
        sock.close()


def _socket_in(netns: Path) -> socket.socket:
    """A TCP socket of `netns`, made by a short-lived thread that enters it (setns is per thread)."""
    made: list[socket.socket | BaseException] = []

    def make() -> None:
        try:
            fd = os.open(netns, os.O_RDONLY | os.O_CLOEXEC)
            try:
                enter_netns(fd, "cannot enter the job's network namespace")
            finally:
                os.close(fd)
            made.append(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
        except BaseException as exc:  # handed to the caller
            made.append(exc)

    thread = threading.Thread(target=make, name="corral-netns", daemon=True)
    thread.start()
    thread.join()
    if isinstance(made[0], BaseException):
        raise made[0]
    return made[0]


class NetworkPool:
    """Private networks, each used by one job at a time and kept for the next."""

    def __init__(self, work_dir: Path) -> None:
        self.work_dir = work_dir
        self._idle: list[PrivateNetwork] = []
        self._all: list[PrivateNetwork] = []
        self._reclaiming: set[asyncio.Task[None]] = set()
        self._api_dir: Path | None = None

    async def take(self, publish: tuple[int, ...] = ()) -> PrivateNetwork:
        """A network for one job; `publish`: ports of the instance forwarded to the job (services)."""
        network = self._idle.pop() if self._idle else await self._new()
        if publish:
            try:
                await network.publish(publish)
            except BaseException:
                self.give_back(network)
                raise
        return network

    async def _new(self) -> PrivateNetwork:
        network = PrivateNetwork(self._sockets_dir())
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with open(self.work_dir / NETNS_RECORD, "a") as f:
            f.write(network.name + "\n")
        if os.geteuid() == 0:  # host-wide: a crash's namespace is found whatever becomes of work_dir
            try:
                network.owner_file = NETNS_OWNERS_DIR / network.name
                write_record(network.owner_file, owner(self.work_dir))
            except OSError as exc:
                network.owner_file = None
                log.warning("could not record the owner of network %s: %s", network.name, exc)
        await network.start()
        self._all.append(network)
        return network

    def _sockets_dir(self) -> Path:
        """Where the API sockets go: the (hidden) work dir, unless its path is too long for a socket's."""
        if self._api_dir is None:
            if len(str(self.work_dir)) <= 70:  # + "/net/corral-<12>.sock" stays under sun_path's 108
                self._api_dir = self.work_dir / "net"
                self._api_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            else:
                self._api_dir = Path(tempfile.mkdtemp(prefix="corral-net-"))  # 0700
        return self._api_dir

    def give_back(self, network: PrivateNetwork) -> None:
        """After the job's processes are all gone (its cgroup emptied)."""
        if network.forwards and network.slirp is not None and network.slirp.returncode is None:
            task = asyncio.get_running_loop().create_task(self._reclaim(network))
            self._reclaiming.add(task)
            task.add_done_callback(self._reclaiming.discard)
        elif network.slirp is not None and network.slirp.returncode is None:
            self._idle.append(network)
        else:
            self._all.remove(network)
            asyncio.get_running_loop().create_task(network.stop())

    async def _reclaim(self, network: PrivateNetwork) -> None:
        """Close a finished service's published ports before the network serves another job."""
        try:
            await network.unpublish()
        except NetworkError as exc:  # never hand on a network that may still listen: end it
            log.warning("%s; stopping that private network", exc)
            await network.stop()
        self.give_back(network)

    async def close(self) -> None:
        if self._reclaiming:
            await asyncio.gather(*self._reclaiming, return_exceptions=True)
        await asyncio.gather(*(n.stop() for n in self._all), return_exceptions=True)
        self._all.clear()
        self._idle.clear()
        (self.work_dir / NETNS_RECORD).unlink(missing_ok=True)
        if self._api_dir is not None:
            shutil.rmtree(self._api_dir, ignore_errors=True)
            self._api_dir = None


async def delete_recorded(work_dir: Path) -> None:
    """Namespaces a dead worker left (their slirp4netns exited with it)."""
    record = work_dir / NETNS_RECORD
    with contextlib.suppress(OSError):
        for name in record.read_text().split():
            if name.startswith("corral-"):
                with contextlib.suppress(NetworkError):
                    await ip("netns", "del", name)
    record.unlink(missing_ok=True)
