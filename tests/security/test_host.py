"""An ordinary user's job cannot touch the host, the server's secrets or the worker (real server + worker)."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

from tests.acceptance.harness import RunningServer
from tests.security.conftest import Attacker


def test_job_runs_unprivileged_without_capabilities_and_under_seccomp(attacker: Attacker) -> None:
    status, log = attacker.run("id -u; grep -E '^(CapEff|CapBnd|NoNewPrivs|Seccomp):' /proc/self/status")
    assert status["state"] == "Success", status
    lines = log.split()
    assert lines[0] != "0"  # not root on the host: the uid the kernel checks is an unprivileged one
    fields = dict(zip(lines[1::2], lines[2::2], strict=True))
    assert fields == {"CapEff:": "0000000000000000", "CapBnd:": "0000000000000000",
                      "NoNewPrivs:": "1", "Seccomp:": "2"}, log


def test_remount_and_write_to_the_host_fail_and_leave_no_file(attacker: Attacker) -> None:
    marker = f"corral-attack-{uuid.uuid4().hex}"
    script = (
        f"mount -o remount,bind,rw /var && echo REMOUNTED; echo pwned > /var/{marker} && echo WROTE-VAR; "
        f"mount -t tmpfs none /mnt && echo MOUNTED; mknod /tmp/{marker}-dev c 1 1 && echo MKNOD; "
        f"echo pwned > /etc/{marker} && echo WROTE-ETC; unshare -U true && echo UNSHARED; "
        "insmod /nonexistent.ko 2>/dev/null; true"
    )
    status, log = attacker.run(script)
    assert status["state"] == "Success", status
    for success in ("REMOUNTED", "WROTE-VAR", "MOUNTED", "MKNOD", "WROTE-ETC", "UNSHARED"):
        assert success not in log, log
    assert not Path("/var", marker).exists()
    assert not Path("/etc", marker).exists()


def test_root_only_files_are_unreadable(attacker: Attacker) -> None:
    status, log = attacker.run(
        "cat /etc/shadow && echo READ-SHADOW; ls -A /root/.ssh && echo LISTED-SSH; "
        "cat /root/.bash_history && echo READ-HISTORY; true"
    )
    assert status["state"] == "Success", status
    assert "READ-SHADOW" not in log and "root:" not in log
    assert "LISTED-SSH" not in log and "READ-HISTORY" not in log


def test_corral_home_secrets_are_invisible(server: RunningServer, attacker: Attacker) -> None:
    home = server.home
    admin_token = json.loads((home / "tokens.json").read_text())["admin_token"]
    script = (
        f"cat {home}/tokens.json; cat {home}/corral.db | head -c 100 | od -c | head -2; "
        f"ls -R {home} | head -50; find / -xdev -name tokens.json 2>/dev/null; true"
    )
    status, log = attacker.run(script)
    assert status["state"] == "Success", status
    assert admin_token not in log and server.token not in log
    assert "SQLite" not in log and "S   Q   L" not in log
    assert "tokens.json" not in log.replace(f"{home}/tokens.json: ", "")


def test_the_worker_token_and_environment_are_out_of_reach(server: RunningServer, attacker: Attacker) -> None:
    from tests.acceptance.harness import worker_processes

    workers = worker_processes(server.home)
    assert workers, "no worker process found"
    tokens = [w.environ().get("CORRAL_WORKER_TOKEN", "") for w in workers]
    assert all(tokens)
    pids = " ".join(str(w.pid) for w in workers)
    script = (
        f"for p in /proc/[0-9]*; do cat $p/environ $p/cmdline 2>/dev/null | tr '\\0' '\\n'; done; "
        f"for p in {pids}; do cat /proc/$p/environ /proc/$p/cmdline 2>/dev/null; done; env; true"
    )
    status, log = attacker.run(script)
    assert status["state"] == "Success", status
    for token in tokens:
        assert token not in log
    assert "CORRAL_WORKER_TOKEN" not in log and "CORRAL_HOME" not in log


def test_another_jobs_scratch_is_unreadable(server: RunningServer, attacker: Attacker) -> None:
    from tests.security.conftest import new_user

    victim = new_user(server)
    secret = uuid.uuid4().hex
    batch_id = server.submit(
        [{"job_id": 1, "process": {"type": "docker", "command": [
            "/bin/bash", "-c", f"echo {secret} > /io/secret; echo {secret} > /tmp/secret; sleep 20"]},
          "resources": {"cpu": "0.25", "memory": "64Mi"}}],
        token=victim.token,
    )
    worker_dir = server.home / "worker"
    deadline_files: list[Path] = []
    import time

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not deadline_files:
        deadline_files = list(worker_dir.glob("*/jobs/*/vol/io/secret"))
        time.sleep(0.1)
    assert deadline_files, "the victim's job did not start"
    io_dir = deadline_files[0].parent
    script = (
        f"cat {io_dir}/secret {io_dir.parent}/tmp/secret; ls -R {worker_dir}; "
        "for p in /proc/[0-9]*/root; do cat $p/io/secret $p/tmp/secret 2>/dev/null; done; true"
    )
    status, log = attacker.run(script)
    with server.client(victim.token) as c:
        c.patch(f"/api/v1/batches/{batch_id}/cancel")
    assert status["state"] == "Success", status
    assert secret not in log


def test_a_new_user_namespace_is_refused_by_clone_too(attacker: Attacker) -> None:
    """unshare(2) is denied; clone(2) with CLONE_NEWUSER (a way back to capabilities) must be as well."""
    script = (
        "python3 -c 'import ctypes, os; libc = ctypes.CDLL(None, use_errno=True); "
        "r = libc.syscall(56, 0x10000000 | 17, 0, 0, 0, 0); "
        "print(\"CLONED\" if r >= 0 else \"refused\", os.strerror(ctypes.get_errno()))'"
    )
    status, log = attacker.run(script)
    assert status["state"] == "Success", (status, log)
    assert "refused Operation not permitted" in log and "CLONED" not in log, log


def test_the_hosts_run_is_not_the_jobs(server: RunningServer, attacker: Attacker) -> None:
    """/run holds daemons' sockets (a read-only bind does not stop connect()) and Corral's own records."""
    assert Path("/run/corral-workers").is_dir()  # this root worker recorded itself there
    status, log = attacker.run("ls -A /run; echo end-of-run; touch /run/x && echo WROTE-RUN; true")
    assert status["state"] == "Success", status
    shown = log.split("end-of-run")[0].split()
    assert "corral-workers" not in shown and "corral-net" not in shown, log
    assert "WROTE-RUN" not in log
