"""Preparation and health on an ssh pool (real sshd): checks and setup steps before an instance takes jobs,
a failed check makes the host unusable with the reason, an unhealthy host loses its instances."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import pytest
from tests.acceptance.sshbed import SshTestbed

from corral.providers.base import InstanceRequest, MachineShape
from corral.providers.prepare import PreparationFailed, PrepareConfig
from corral.providers.ssh.options import SshHost, SshOptions
from corral.providers.ssh.provider import SshProvider

NOWHERE = "http://127.0.0.1:9"
SHAPE = MachineShape("one-core", cores=1, memory_bytes=256 << 20)


def git_repo(path: Path) -> str:
    path.mkdir()
    run = lambda *a: subprocess.run(["git", "-C", str(path), *a], check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (path / "train.py").write_text("print('v1')\n")
    run("add", ".")
    run("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "v1")
    commit = subprocess.run(
        ["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True, text=True
    ).stdout
    (path / "train.py").write_text("print('v2')\n")
    run("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qam", "v2")
    return commit.strip()


async def test_preparation_runs_its_checks_and_setup_steps_and_reports_them(
    tmp_path: Path, ssh_testbed: SshTestbed
) -> None:
    commit = git_repo(tmp_path / "repo")
    (tmp_path / "requirements.txt").write_text("psutil\n")  # already in the venv: pip needs no network
    (tmp_path / "vocab.txt").write_text("a b c\n")
    prepare = PrepareConfig.model_validate(
        {
            "python": ">=3.9",
            "python_path": sys.executable,
            "min_free_disk": "1Mi",
            "commands": ["test -d /"],
            "requirements": str(tmp_path / "requirements.txt"),
            "git": {"url": f"file://{tmp_path / 'repo'}", "commit": commit, "dest": "code"},
            "copy": [{"source": str(tmp_path / "vocab.txt"), "dest": "code/vocab.txt"}],
        }
    )
    host = SshHost.model_validate(ssh_testbed.loopback_host("prep1", cores=1, memory="1Gi"))
    work = Path(host.work_dir)
    provider = SshProvider("lab", SshOptions(hosts=[host], health_interval=0), prepare=prepare)
    await provider.start(NOWHERE)
    try:
        meta = await provider.create_instance(InstanceRequest("lab-p1", "lab", SHAPE, "t", NOWHERE))
        report = meta["prepare"]
        assert isinstance(report, dict) and report["ok"] is True, report
        names = [s["name"] for s in report["steps"]]
        assert names[:3] == ["python >=3.9", "free disk >= 1Mi", "command: test -d /"]
        assert any(n.startswith("pip install") for n in names) and any(
            n.startswith("git clone") for n in names
        )
        assert (work / "code" / "train.py").read_text() == "print('v1')\n"  # checked out at the commit
        assert (work / "code" / "vocab.txt").read_text() == "a b c\n"
    finally:
        await provider.stop()


async def test_a_failed_check_makes_the_instance_unusable_with_the_reason_and_changes_nothing(
    tmp_path: Path, ssh_testbed: SshTestbed
) -> None:
    prepare = PrepareConfig.model_validate({"python": "<3.0", "commands": ["touch should-not-exist"]})
    host = SshHost.model_validate(
        ssh_testbed.loopback_host("prep2", cores=1, memory="1Gi", work_dir=str(tmp_path / "w"))
    )
    provider = SshProvider("lab", SshOptions(hosts=[host], health_interval=0), prepare=prepare)
    await provider.start(NOWHERE)
    try:
        with pytest.raises(PreparationFailed) as failed:
            await provider.create_instance(InstanceRequest("lab-p2", "lab", SHAPE, "t", NOWHERE))
        assert "does not satisfy <3.0" in failed.value.message
        assert failed.value.metadata["prepare"]["ok"] is False
        assert [s["name"] for s in failed.value.metadata["prepare"]["steps"]] == ["python <3.0"]
        assert not list(tmp_path.glob("**/should-not-exist"))  # checks stop at the first failure
        assert provider.placed == {}
    finally:
        await provider.stop()


async def test_an_unhealthy_host_loses_its_instances_with_the_reason_and_keeps_its_history(
    ssh_testbed: SshTestbed,
) -> None:
    host = SshHost.model_validate(ssh_testbed.loopback_host("sick", cores=1, memory="1Gi"))
    provider = SshProvider(
        "lab", SshOptions(hosts=[host], health_interval=0.3, health={"min_free_disk": "1000Ti"})
    )
    await provider.start(NOWHERE)
    try:
        await provider.create_instance(InstanceRequest("lab-s1", "lab", SHAPE, "t", NOWHERE))
        for _ in range(100):
            listing = {i.name: i for i in await provider.list_instances()}
            if listing["lab-s1"].status == "gone":
                break
            await asyncio.sleep(0.1)
        assert listing["lab-s1"].status == "gone"
        assert "unhealthy: free disk" in (listing["lab-s1"].reason or "")
        sample = provider.health["sick"][-1]
        assert sample["healthy"] is False and sample["disk_total"] > 0 and sample["memory_total"] > 0
    finally:
        await provider.stop()
