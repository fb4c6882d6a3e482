"""Published ports of private networks (runtimes/network.py): slirp4netns' add_hostfwd / remove_hostfwd.

A port is forwarded from the instance to the job's address in its namespace while the job holds the
network, closed before the network serves the next job, and gone with the pool; a port the instance
already uses is refused without spoiling the network.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import psutil
import pytest

from corral.runtimes.network import (
    PRIVATE_JOB_ADDRESS,
    NetworkError,
    NetworkPool,
    PrivateNetwork,
    connect_inside,
    published_namespace,
)
from corral.worker.service import allocate_ports, external_address

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("slirp4netns") is None,
    reason="private networks need root (ip netns) and slirp4netns (scripts/setup.sh)",
)

SERVER = (
    "import socket, sys\n"
    "s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
    "s.bind(('0.0.0.0', int(sys.argv[1]))); s.listen(8); print('listening', flush=True)\n"
    "while True:\n"
    "    c, a = s.accept(); c.sendall(f'hello from {a[0]}'.encode()); c.close()\n"
)


@pytest.fixture
async def pool(tmp_path: Path) -> AsyncIterator[NetworkPool]:
    made = NetworkPool(tmp_path / "w")
    yield made
    await made.close()


async def _serve_inside(network: PrivateNetwork, port: int) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        "ip", "netns", "exec", network.name, sys.executable, "-c", SERVER, str(port),
        stdout=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )
    assert proc.stdout is not None
    assert await asyncio.wait_for(proc.stdout.readline(), 60) == b"listening\n"
    return proc


async def _read_from(host: str, port: int) -> bytes:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 30)
    try:
        return await asyncio.wait_for(reader.read(), 30)
    finally:
        writer.close()


async def _until(condition: object, what: str) -> None:
    for _ in range(600):
        if callable(condition) and condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(what)


async def test_a_published_port_leads_into_the_namespace_until_the_network_is_given_back(
    pool: NetworkPool,
) -> None:
    port = allocate_ports(("main",))["main"]
    network = await pool.take((port,))
    assert published_namespace(port) == network.path
    with pytest.raises(ConnectionRefusedError):  # nothing listens in the namespace yet
        await connect_inside(network.path, PRIVATE_JOB_ADDRESS, port, 10)
    server = await _serve_inside(network, port)
    try:
        await connect_inside(network.path, PRIVATE_JOB_ADDRESS, port, 10)
        address = external_address()
        assert address is not None and not address.startswith("127.")
        # From the host, by loopback and by the instance's external address: both reach the job.
        assert (await _read_from("127.0.0.1", port)).startswith(b"hello from ")
        assert (await _read_from(address, port)).startswith(b"hello from ")
    finally:
        server.kill()
        await server.wait()
    pool.give_back(network)
    await _until(lambda: published_namespace(port) is None, "the forward was not removed")
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=10).close()
    again = await pool.take()  # reused, and without the old forward
    assert again is network and again.forwards == {}
    slirp = psutil.Process(network.slirp.pid) if network.slirp else None
    pool.give_back(again)
    await pool.close()
    assert slirp is not None and not (slirp.is_running() and slirp.status() != psutil.STATUS_ZOMBIE)
    assert not network.path.exists() and not network.api_socket.exists()


async def test_a_port_the_instance_already_uses_is_refused_and_the_network_stays_usable(
    pool: NetworkPool,
) -> None:
    busy = socket.socket()
    busy.bind(("0.0.0.0", 0))
    busy.listen(1)
    try:
        port = int(busy.getsockname()[1])
        with pytest.raises(NetworkError, match="add_hostfwd"):
            await pool.take((port,))
        assert published_namespace(port) is None
        network = await pool.take()
        assert network.forwards == {}
        free = allocate_ports(("main",))["main"]
        await network.publish((free,))  # its API still answers
        assert published_namespace(free) == network.path
        pool.give_back(network)
        await _until(lambda: published_namespace(free) is None, "the forward was not removed")
    finally:
        busy.close()


async def test_a_namespace_ip_failed_to_delete_is_deleted_and_its_record_goes_only_with_it(
    pool: NetworkPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`ip netns del` killed between its unmount and its unlink leaves an unmounted placeholder in
    /run/netns: stop() deletes it itself, and drops the owner record (the reaper's lead) only once the
    namespace is gone."""
    from corral.runtimes import network as network_module
    from corral.runtimes.volume import unmount

    network = await pool.take()
    assert network.owner_file is not None and network.owner_file.exists()
    real_ip = network_module.ip

    async def killed_midway(*args: str) -> None:
        if args[:2] == ("netns", "del"):
            unmount(network.path)  # what `ip netns del` does first
            raise NetworkError("ip netns del: killed")
        await real_ip(*args)

    monkeypatch.setattr(network_module, "ip", killed_midway)
    await network.stop()
    assert not os.path.lexists(network.path), "the namespace's placeholder is left in /run/netns"
    assert not network.owner_file.exists()

    held = await pool.take()  # a namespace that cannot be deleted keeps its record
    assert held.owner_file is not None

    async def refused(*args: str) -> None:
        if args[:2] == ("netns", "del"):
            raise NetworkError("ip netns del: refused")
        await real_ip(*args)

    monkeypatch.setattr(network_module, "ip", refused)
    monkeypatch.setattr(network_module, "unmount", lambda path: (_ for _ in ()).throw(OSError(16, "busy")))
    await held.stop()
    assert os.path.lexists(held.path) and held.owner_file.exists()
    monkeypatch.undo()
    await held.stop()
    assert not os.path.lexists(held.path) and not held.owner_file.exists()
