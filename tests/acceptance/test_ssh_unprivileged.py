"""A worker that is not root: an SSH host's account without privileges runs the worker, which runs each
job as that user in a user namespace (docs/jobs.md). The job still cannot read the worker's token or
home, sees a read-only host, and leaves nothing running."""

from __future__ import annotations

import json
import os
import pwd
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.acceptance.harness import RunningServer, job
from tests.acceptance.sshbed import SshTestbed, collections_toml

USER = "corral-ssh-worker"


@pytest.fixture(scope="module")
def unprivileged(ssh_testbed: SshTestbed) -> Iterator[pwd.struct_passwd]:
    """An ordinary account on this machine (the SSH host), with a home of its own and the testbed's key
    (sshd reads a user's own ~/.ssh/authorized_keys as that user: the testbed's file is root's alone)."""
    if os.geteuid() != 0:
        if os.environ.get("CI") == "true":
            pytest.fail("creates a user account: needs root")
        pytest.skip("creates a user account: needs root")
    try:
        account = pwd.getpwnam(USER)
    except KeyError:
        # -p '*': no password to log in with, yet not a locked account (sshd without PAM refuses those)
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", "-p", "*", USER], check=True)
        account = pwd.getpwnam(USER)
    ssh = Path(account.pw_dir) / ".ssh"
    ssh.mkdir(mode=0o700, exist_ok=True)
    keys = ssh / "authorized_keys"
    keys.write_text(Path(ssh_testbed.info["key"] + ".pub").read_text())
    for path in (ssh, keys):
        os.chown(path, account.pw_uid, account.pw_gid)
    yield account


def test_a_worker_that_is_not_root_runs_jobs_contained_as_its_user(
    start_server: Any, tmp_path: Path, ssh_testbed: SshTestbed, unprivileged: pwd.struct_passwd
) -> None:
    work = Path(unprivileged.pw_dir) / f"work-{os.getpid()}"
    shutil.rmtree(work, ignore_errors=True)
    host = {**ssh_testbed.loopback_host("plain", cores=2, memory="2Gi"), "user": USER, "work_dir": str(work)}
    pool = {
        "name": "plain", "kind": "pool", "provider": "ssh", "shape": {"cores": 1, "memory": "512Mi"},
        "min_instances": 0, "max_instances": 1, "idle_seconds": 30.0,
        "provider_options": {"hosts": [host], "connect_timeout": 10.0},
    }
    config = tmp_path / "corral.toml"
    config.write_text(collections_toml([pool]))
    # Network namespaces need root: this site's jobs get no network unless they ask (the policy travels
    # to the worker with the server's [jobs] settings).
    server: RunningServer = start_server(
        local_workers=0, config=str(config), pool="plain", heartbeat_timeout=10,
        jobs=json.dumps({"default_network": "none"}),
    )
    probe = (
        "id -u; echo secret-dir=$(ls ~/ 2>&1 | head -c 200); "
        f"cat {work}/home/*.json 2>/dev/null && echo READ-WORKER-FILES; "
        "touch /usr/corral-wrote-here 2>/dev/null && echo WROTE-HOST; "
        "echo hello > /io/out.txt && cat /io/out.txt; (sleep 300 &) ; true"
    )
    batch_id = server.submit([job(probe, 1), job("true", 2, network="private")])
    server.wait(batch_id, timeout=180)
    with server.client() as c:
        log = c.get(f"/api/v1/batches/{batch_id}/jobs/1/log/main").text
        first = c.get(f"/api/v1/batches/{batch_id}/jobs/1").json()
        private = c.get(f"/api/v1/batches/{batch_id}/jobs/2").json()
    assert first["state"] == "Success", json.dumps(first)[:3000]
    # A private network cannot be made here: the job says why, it does not run without one.
    assert private["state"] == "Error" and "needs a worker running as root" in private["reason"], private
    lines = log.split()
    assert str(unprivileged.pw_uid) in lines or "0" in lines  # its own user, or root of its user namespace
    assert "READ-WORKER-FILES" not in log and "WROTE-HOST" not in log and "hello" in lines
    assert not Path("/usr/corral-wrote-here").exists()
    # What the job left running went with its sandbox: no `sleep 300` of that user on the host.
    assert _processes_of(unprivileged.pw_uid, "sleep 300") == []
    # The worker itself ran as that user.
    assert _processes_of(unprivileged.pw_uid, "corral worker"), "no worker runs as the unprivileged user"


def _processes_of(uid: int, command: str) -> list[int]:
    """Pids of `uid`'s processes whose command line contains `command` (from /proc: no procps needed)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            owner = entry.stat().st_uid
        except OSError:
            continue
        if owner == uid and command in cmdline:
            found.append(int(entry.name))
    return found
