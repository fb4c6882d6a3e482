"""The CLI as a user sees it, against a real server: why jobs ended (in words, human and --json), failure
summaries and exit codes, waits that time out, cancelled-before-start, JSON from changing commands,
one server per home. The CLI finds the server through $CORRAL_HOME alone."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from tests.acceptance.harness import RunningServer, job
from tests.cli_support import assert_no_traceback, corral_env, run_corral


@pytest.fixture
def server(user_view_server: RunningServer) -> RunningServer:
    return user_view_server


@pytest.fixture(scope="module")
def ended(user_view_server: RunningServer) -> int:
    """A batch whose jobs end every way: exit 3, a child cancelled by it, a timeout, out of memory, ok."""
    oom = f"{sys.executable} -c 'x = bytearray(300 * 1024 * 1024); print(len(x))'"
    server = user_view_server
    batch_id = server.submit([
        job("echo failing; exit 3", 1, name="fails"),
        job("echo never", 2, parents=[1], name="child"),
        job("sleep 30", 3, timeout=1, name="slow"),
        job(oom, 4, name="hungry", memory="64Mi"),
        job("echo hello", 5, name="fine"),
    ], attributes={"name": "ended"})
    server.wait(batch_id)
    return batch_id


def cli(server: RunningServer, *args: str, expect: int | None = None) -> Any:
    return run_corral(list(args), env=corral_env(server.home), expect=expect)


def test_batch_jobs_says_why_each_job_ended_in_words(server: RunningServer, ended: int) -> None:
    out = cli(server, "batch", "jobs", str(ended), expect=0).stdout
    lines = {int(line.split("│")[1]): line for line in out.splitlines() if line.startswith("│ ")
             and line.split("│")[1].strip().isdigit()}
    assert "the command exited with code 3" in lines[1]
    assert "cancelled because its parent job 1 (fails) failed" in lines[2]
    assert "timed out after 1s" in lines[3]
    assert "out of memory" in lines[4] and "64 MiB memory limit" in lines[4]
    assert "Success" in lines[5]
    assert "5 jobs shown" in out and "1 succeeded, 3 failed, 1 cancelled" in out


def test_job_get_and_json_carry_the_reason(server: RunningServer, ended: int) -> None:
    human = cli(server, "job", "get", str(ended), "3", expect=0).stdout
    assert "reason: timed out after 1s" in human
    data = json.loads(cli(server, "job", "get", str(ended), "4", "--json", expect=0).stdout)
    assert data["reason"].startswith("out of memory")
    assert data["attempts"] and data["attempts"][0]["instance_name"]
    listed = json.loads(cli(server, "batch", "jobs", str(ended), "--json", expect=0).stdout)
    assert [j["reason"] is None for j in listed] == [False, False, False, False, True]


def test_waiting_on_a_failed_batch_exits_1_with_a_summary(server: RunningServer, ended: int) -> None:
    result = cli(server, "batch", "wait", str(ended), "--no-progress", expect=1)
    assert f"batch {ended} ended in failure: 1 of 5 jobs succeeded, 3 failed, 1 cancelled" in result.stderr
    assert "job 1 (fails): Failed: the command exited with code 3" in result.stderr
    assert f"logs: corral job log {ended} 1" in result.stderr


def test_batch_list_and_get_show_cost(server: RunningServer, ended: int) -> None:
    listed = cli(server, "batch", "list", expect=0).stdout
    assert "cost" in listed and "$" in listed
    got = cli(server, "batch", "get", str(ended), expect=0).stdout
    assert "$" in got
    assert json.loads(cli(server, "batch", "get", str(ended), "--json", expect=0).stdout)["cost"] > 0


def test_batch_jobs_pages_and_points_to_the_next_page(server: RunningServer, ended: int) -> None:
    out = cli(server, "batch", "jobs", str(ended), "--limit", "2", expect=0).stdout
    assert "2 jobs shown" in out
    assert f"next page: corral batch jobs {ended} --after 2" in out
    rest = cli(server, "batch", "jobs", str(ended), "--limit", "2", "--after", "4", expect=0).stdout
    assert "1 jobs shown" in rest and "next page" not in rest


def test_a_wait_that_times_out_exits_5_and_cancel_before_start_is_explained(server: RunningServer) -> None:
    batch_id = server.submit([job("sleep 60", 1), job("echo child", 2, parents=[1])])
    result = cli(server, "batch", "wait", str(batch_id), "--timeout", "0.5", "--no-progress", expect=5)
    assert f"batch {batch_id} is not complete after 0.5s and keeps running" in result.stderr
    assert f"corral batch cancel {batch_id}" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    live = json.loads(cli(server, "batch", "get", str(batch_id), "--json", expect=0).stdout)
    assert live["n_pending"] == 1 and live["n_running"] + live["n_ready"] == 1

    cancelled = json.loads(cli(server, "batch", "cancel", str(batch_id), "--json", expect=0).stdout)
    assert cancelled == {"id": batch_id, "cancelled": True, "state": "cancelled"}
    server.wait(batch_id)
    log = cli(server, "job", "log", str(batch_id), "2", expect=0).stdout
    assert f"job 2 of batch {batch_id} was cancelled before it started, so it has no logs" in log
    deleted = json.loads(cli(server, "batch", "delete", str(batch_id), "--json", expect=0).stdout)
    assert deleted == {"id": batch_id, "deleted": True}
    cli(server, "batch", "get", str(batch_id), expect=1)


def test_job_log_follow_streams_a_running_jobs_log(server: RunningServer) -> None:
    batch_id = server.submit([job("echo first; sleep 15; echo second", 1)])
    deadline = time.monotonic() + 60
    seen = ""
    while time.monotonic() < deadline and "first" not in seen:
        seen = cli(server, "job", "log", str(batch_id), "1", "--step", "main").stdout
        time.sleep(0.3)
    # The worker sends the log while the job runs: it is readable before the job ends.
    assert "first" in seen and "second" not in seen
    assert server.job(batch_id, 1)["state"] == "Running"
    result = cli(server, "job", "log", str(batch_id), "1", "--follow", expect=0)
    assert "first\nsecond" in result.stdout
    assert f"job 1 of batch {batch_id} ended: Success" in result.stdout


def test_a_second_server_on_the_same_home_refuses_and_the_first_keeps_running(server: RunningServer) -> None:
    url_before = server.url_file.read_text()
    result = run_corral(["server"], env=server.env, timeout=120)
    assert result.code == 1
    assert f"a Corral server already runs for {server.home}" in result.stderr
    assert server.url in result.stderr
    assert server.url_file.read_text() == url_before
    assert server.proc is not None and server.proc.poll() is None
    batch_id = server.submit([job("true", 1)])
    assert server.wait(batch_id)["state"] == "success"


def test_unknown_job_and_batch_are_one_line_errors(server: RunningServer) -> None:
    result = cli(server, "job", "get", "999999", "1", expect=1)
    assert result.stderr.startswith("error:") and len(result.stderr.strip().splitlines()) == 1


def test_cli_start_does_not_import_the_heavy_libraries(server: RunningServer) -> None:
    """`corral --help` stays fast: the command tree is built without httpx, pydantic, rich or the server."""
    code = (
        "import sys, corral.cli.main as m; heavy = [n for n in ('httpx', 'pydantic', 'sqlalchemy', "
        "'fastapi', 'rich', 'corral.config', 'corral.client.sync') if n in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout


READ_COMMANDS = [
    ["batch", "list"], ["batch", "get", "{b}"], ["batch", "jobs", "{b}"], ["job", "get", "{b}", "1"],
    ["job", "log", "{b}", "5"], ["pool", "list"], ["pool", "get", "default"], ["instance", "list"],
]
SERVER_SIDE_OR_ASYNC = (
    "fastapi", "starlette", "uvicorn", "sqlalchemy", "alembic", "pyarrow", "fsspec", "jinja2",
    "corral.api.schemas", "corral.store", "corral.config", "corral.server", "corral.client.sync",
    "corral.client.http", "asyncio", "corral.cli.billing", "corral.cli.sweeps", "corral.cli.bench",
)


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: " ".join(c[:2]))
def test_read_commands_import_no_server_side_or_async_machinery(
    server: RunningServer, ended: int, command: list[str]
) -> None:
    """Read commands answer fast: a blocking GET client and the server's JSON as records; no API
    schemas, no event loop, no server libraries, and only the command group named is built."""
    args = [a.format(b=ended) for a in command]
    code = (
        "import runpy, sys, json\n"
        f"sys.argv = ['corral', *{args!r}]\n"
        "try:\n    runpy.run_module('corral', run_name='__main__')\n"
        "except SystemExit as e:\n    code = e.code\nelse:\n    code = 0\n"
        f"loaded = [n for n in {SERVER_SIDE_OR_ASYNC!r} if n in sys.modules]\n"
        "print('LOADED=' + json.dumps([code, loaded]), file=sys.stderr)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=corral_env(server.home), timeout=120)
    line = next(x for x in out.stderr.splitlines() if x.startswith("LOADED="))
    exit_code, loaded = json.loads(line.removeprefix("LOADED="))
    assert exit_code in (0, None), out.stderr
    assert loaded == [], f"{' '.join(args)} imported {loaded}"
    assert out.stdout.strip(), "the command printed nothing"


@pytest.mark.parametrize("command", [["job", "log", "{b}", "5"], ["batch", "jobs", "{b}", "--json"]])
def test_output_into_a_closed_pipe_stops_quietly(
    server: RunningServer, ended: int, command: list[str]
) -> None:
    """`corral … | head`: when the reader has gone, no 'internal error' and no traceback."""
    proc = subprocess.Popen([sys.executable, "-m", "corral", *(a.format(b=ended) for a in command)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=corral_env(server.home))
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # nobody reads: the command's first write fails with EPIPE
    err = proc.stderr.read()
    assert proc.wait(timeout=120) == 141, err
    assert "internal error" not in err
    assert_no_traceback(err)


def test_pools_instances_and_users_are_visible(server: RunningServer, ended: int) -> None:
    pools = cli(server, "pool", "list", expect=0).stdout
    row = next(line for line in pools.splitlines() if line.startswith("│ default"))
    assert "local" in row and "1 active" in row and "ok" in row
    (pool,) = json.loads(cli(server, "pool", "list", "--json", expect=0).stdout)
    assert (pool["name"], pool["provider"], pool["instances"], pool["health"]) == (
        "default", "local", {"active": 1}, "ok")
    assert pool["cores_total"] == 2

    (inst,) = json.loads(cli(server, "instance", "list", "--json", expect=0).stdout)
    assert inst["host_name"] == socket.gethostname() and inst["address"] == "this machine"
    assert inst["health"] == "healthy" and inst["provider_id"]
    listed = cli(server, "instance", "list", expect=0).stdout
    assert inst["name"] in listed and socket.gethostname() in listed
    got = cli(server, "instance", "get", inst["name"], expect=0).stdout
    assert "healthy" in got and "last heartbeat" in got
    # Attempts name the host they ran on.
    attempts = json.loads(cli(server, "job", "get", str(ended), "5", "--json", expect=0).stdout)["attempts"]
    assert attempts[0]["instance_host"] == socket.gethostname()

    users = json.loads(cli(server, "user", "list", "--json", expect=0).stdout)
    assert {"name": "admin", "is_admin": True} in users
    cli(server, "instance", "get", "no-such-instance", expect=1)


def test_an_instance_token_lets_a_hand_started_worker_join(server: RunningServer, tmp_path: Path) -> None:
    minted = json.loads(cli(server, "instance", "token", "box9", "--cores", "1", "--json", expect=0).stdout)
    assert minted["pool"] == "default" and minted["token"]
    env = {**corral_env(tmp_path), "CORRAL_WORKER_STOP_ON_TERM": "1"}
    worker = subprocess.Popen(
        [sys.executable, "-m", "corral", "worker", "--url", server.url, "--name", "box9", "--token",
         minted["token"], "--cores", "1", "--memory", "1Gi"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        state = ""
        while time.monotonic() < deadline and state != "active":
            state = json.loads(cli(server, "instance", "get", "box9", "--json", expect=0).stdout)["state"]
            time.sleep(0.2)
        assert state == "active"
        again = cli(server, "instance", "token", "box9", expect=1)
        assert "already exists" in again.stderr
    finally:
        worker.terminate()
        worker.wait(timeout=60)


def test_batch_retry_reruns_only_failed_and_cancelled_jobs(server: RunningServer) -> None:
    bucket = server.home / "buckets" / "corral-local"  # a place file:// URLs may name (files/roots.py)
    bucket.mkdir(parents=True, exist_ok=True)
    flag = bucket / "retry-flag"
    flag.write_text("bad")
    gate = {"input_files": [{"from": f"file://{flag}", "to": "/io/flag"}]}
    first = server.submit([
        job("echo ok > /dev/null", 1, name="fine"),
        job('test "$(cat /io/flag)" = ok', 2, parents=[1], name="gate", **gate),
        job("echo after", 3, parents=[2], name="after"),
    ])
    assert server.wait(first)["n_failed"] == 1
    flag.write_text("ok")
    result = cli(server, "batch", "retry", str(first), "--failed", "--wait", "--json", expect=0)
    data = json.loads(result.stdout)
    assert data["retry_of"] == first and data["n_jobs"] == 2 and data["state"] == "success"
    retried = server.jobs(data["id"])
    assert sorted(j["name"] for j in retried.values()) == ["after", "gate"]
    assert server.batch(data["id"])["attributes"]["retry_of"] == str(first)
    nothing = cli(server, "batch", "retry", str(data["id"]), expect=1)
    assert "has no failed or cancelled job to retry" in nothing.stderr


def _once_connected(proc: subprocess.Popen[str], port: int, timeout: float = 60) -> None:
    """Wait until the process holds a connection to the server (it is past start-up, in its wait loop)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            conns = psutil.Process(proc.pid).net_connections(kind="tcp")
        except psutil.NoSuchProcess:
            break
        if any(c.raddr and c.raddr.port == port and c.status == "ESTABLISHED" for c in conns):
            return
        time.sleep(0.05)
    raise AssertionError("the command never connected to the server")


def test_ctrl_c_while_waiting_says_the_batch_keeps_running(server: RunningServer) -> None:
    batch_id = server.submit([job("sleep 60", 1)])
    proc = subprocess.Popen(
        [sys.executable, "-m", "corral", "batch", "wait", str(batch_id), "--no-progress"],
        env=corral_env(server.home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        _once_connected(proc, int(server.url.rsplit(":", 1)[1]))
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130
    assert f"batch {batch_id} keeps running on the server" in err
    assert f"corral batch cancel {batch_id}" in err
    assert_no_traceback(out, err)
    assert server.batch(batch_id)["complete"] is False
    cli(server, "batch", "cancel", str(batch_id), expect=0)


def test_the_progress_bar_shows_running_and_queued_counts(server: RunningServer) -> None:
    import io

    from rich.console import Console

    from corral.client.handle import BatchHandle
    from corral.client.sync import SyncClient

    batch_id = server.submit([job("sleep 2", i, cpu="1") for i in range(1, 4)])  # 2 cores: one queued
    out = io.StringIO()
    with SyncClient(server.url, server.token) as client:
        status = BatchHandle(client, batch_id).wait(
            console=Console(file=out, force_terminal=True, width=200), timeout=120
        )
    assert status["state"] == "success"
    text = out.getvalue()
    assert "2 running" in text and "1 queued" in text


def test_a_job_bigger_than_the_hand_started_workers_says_why_it_waits(
    start_server: Any, tmp_path: Path
) -> None:
    """A pool of workers started by hand (instance tokens, no provider): the submission cannot know their
    size, so the driver does and the job says why it waits, in the CLI and the JSON."""
    server = start_server(local_workers=0)
    env = corral_env(server.home)
    minted = json.loads(run_corral(["instance", "token", "box1", "--cores", "1", "--memory", "1Gi", "--json"],
                                   env=env, expect=0).stdout)
    worker = subprocess.Popen(
        [sys.executable, "-m", "corral", "worker", "--url", server.url, "--name", "box1", "--token",
         minted["token"], "--cores", "1", "--memory", "1Gi"],
        env={**corral_env(tmp_path / "worker-home"), "CORRAL_WORKER_STOP_ON_TERM": "1"},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        batch_id = server.submit([job("true", 1, cpu="4", memory="1Gi"), job("true", 2)])
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (
            server.job(batch_id, 1).get("waiting_reason") and server.job(batch_id, 2)["state"] == "Success"
        ):
            time.sleep(0.2)
        assert server.job(batch_id, 2)["state"] == "Success"  # the big job blocks nobody
        reason = server.job(batch_id, 1)["waiting_reason"]
        assert reason and reason.startswith("needs 4 cores")
        jobs = run_corral(["batch", "jobs", str(batch_id)], env=env, expect=0).stdout
        assert "needs 4 cores" in jobs
        got = run_corral(["job", "get", str(batch_id), "1"], env=env, expect=0).stdout
        assert "waiting: needs 4 cores" in got
        data = json.loads(run_corral(["job", "get", str(batch_id), "1", "--json"], env=env, expect=0).stdout)
        assert data["waiting_reason"] == reason
        status = run_corral(["batch", "get", str(batch_id)], env=env, expect=0).stdout
        assert "1 waiting for a machine" in status
    finally:
        worker.terminate()
        worker.wait(timeout=60)


def test_changing_commands_answer_in_json(server: RunningServer) -> None:
    created = json.loads(cli(server, "billing-project", "create", "lab-x", "--json", expect=0).stdout)
    assert created["billing_project"] == "lab-x"
    added = cli(server, "billing-project", "add-user", "lab-x", "admin", "--json", expect=0)
    added = json.loads(added.stdout)
    assert added == {"billing_project": "lab-x", "user": "admin", "added": True}
    removed = cli(server, "billing-project", "remove-user", "lab-x", "admin", "--json", expect=0)
    removed = json.loads(removed.stdout)
    assert removed == {"billing_project": "lab-x", "user": "admin", "removed": True}
    human = cli(server, "billing-project", "add-user", "lab-x", "admin", expect=0).stdout
    assert human.strip() == "added admin to billing project lab-x"
    human = cli(server, "billing-project", "remove-user", "lab-x", "admin", expect=0).stdout
    assert human.strip() == "removed admin from billing project lab-x"
    user = json.loads(cli(server, "user", "create", "zoe", "--json", expect=0).stdout)
    assert user["name"] == "zoe" and user["token"]
