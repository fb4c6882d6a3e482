"""The ssh provider on its own against real sshd: inventory changes, venv reuse, workers that die."""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import psutil
import pytest
from tests.acceptance.sshbed import SshTestbed, collections_toml, toml_value

from corral.providers.base import InstanceRequest, MachineShape
from corral.providers.ssh.options import SshOptions
from corral.providers.ssh.provider import NoHostFits, SshProvider

NOWHERE = "http://127.0.0.1:9"  # workers keep retrying activation: enough to see them live and die
SHAPE = MachineShape("one-core", cores=1, memory_bytes=256 << 20)


def write_inventory(path: Path, hosts: list[dict[str, object]]) -> None:
    text = "\n".join(
        "[[hosts]]\n" + "\n".join(f"{k} = {toml_value(v)}" for k, v in h.items()) + "\n" for h in hosts
    )
    path.write_text(text)


async def wait_gone(pid: int, timeout: float = 30) -> None:
    for _ in range(int(timeout * 10)):
        if not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"worker pid {pid} still alive")


def request(name: str) -> InstanceRequest:
    return InstanceRequest(name, "lab", SHAPE, "token-" + name, NOWHERE)


async def test_hosts_added_and_removed_in_the_inventory_file_take_effect_while_running(
    tmp_path: Path, ssh_testbed: SshTestbed
) -> None:
    inventory = tmp_path / "hosts.toml"
    lb1 = ssh_testbed.loopback_host("lb1", cores=1, memory="1Gi")
    lb2 = ssh_testbed.loopback_host("lb2", cores=1, memory="1Gi")
    write_inventory(inventory, [lb1])
    provider = SshProvider("lab", SshOptions(inventory=str(inventory), keepalive_interval=1.0))
    await provider.start(NOWHERE)
    try:
        first = await provider.create_instance(request("lab-1"))
        assert first["host"] == "lb1"
        assert psutil.Process(int(first["pid"])).is_running()  # type: ignore[call-overload]
        assert provider.capacity(SHAPE) == 0  # the autoscaler asks no more of a full inventory
        with pytest.raises(NoHostFits):
            await provider.create_instance(request("lab-2"))  # lb1 is full
        venv_marker = next(Path(str(lb1["work_dir"])).glob("venv-*/.complete"))
        installed_at = venv_marker.stat().st_mtime

        write_inventory(inventory, [lb1, lb2])
        await provider.list_instances()  # the autoscaler's tick re-reads the inventory before creating
        assert provider.capacity(SHAPE) == 1
        second = await provider.create_instance(request("lab-2"))
        assert second["host"] == "lb2"
        assert venv_marker.stat().st_mtime == installed_at  # same version: the venv was reused

        write_inventory(inventory, [lb2])
        listing = {i.name: i for i in await provider.list_instances()}
        assert listing["lab-1"].status == "gone"
        assert "removed from the inventory" in (listing["lab-1"].reason or "")
        assert listing["lab-2"].status == "running"
        await provider.delete_instance("lab-1", first)
        await wait_gone(int(first["pid"]))  # type: ignore[call-overload]

        os.kill(int(second["pid"]), signal.SIGKILL)  # type: ignore[call-overload]
        for _ in range(100):
            listing = {i.name: i for i in await provider.list_instances()}
            if listing["lab-2"].status == "gone":
                break
            await asyncio.sleep(0.1)
        assert listing["lab-2"].status == "gone" and "exited" in (listing["lab-2"].reason or ""), listing
        assert provider.list_calls >= 2
    finally:
        await provider.stop()


def test_collections_toml_round_trips_through_settings(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from corral.config import Settings

    config = tmp_path / "c.toml"
    config.write_text(collections_toml([{"name": "lab", "provider": "ssh", "shape": {"cores": 2}}]))
    monkeypatch.setenv("CORRAL_CONFIG", str(config))
    (col,) = Settings().instance_collections
    assert (col.name, col.provider, col.shape.cores if col.shape else None) == ("lab", "ssh", 2)
