"""Pipelines as users run them: `corral run` summaries and exit codes, the user's own frames for their
errors, b.run(resume=...) rerunning only what failed, two LocalBackend scripts sharing one home."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from tests.acceptance.harness import RunningServer
from tests.cli_support import assert_no_traceback, corral_env, run_corral

PIPELINE = """
import os, sys
import corral

fail = os.environ.get("FAIL_SECOND", "1")
b = corral.Batch(name="three", backend=corral.ServiceBackend())
first = b.new_job("first")
first.command(f"echo data > {first.out}")
second = b.new_job("second").env("FAIL", fail)
second.command(f'test "$FAIL" = 0 && cat {first.out} > {second.out}')
third = b.new_job("third")
third.command(f"cat {second.out}")
resume = int(sys.argv[1]) if len(sys.argv) > 1 else None
handle = b.run(progress=False, timeout=120, resume=resume)
print("BATCH", handle.id)
"""


def _script(tmp_path: Path, text: str, name: str = "pipeline.py") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def test_corral_run_of_a_failing_pipeline_exits_1_with_a_summary(
    user_view_server: RunningServer, tmp_path: Path
) -> None:
    script = _script(tmp_path, PIPELINE)
    result = run_corral(["run", str(script)], env=corral_env(user_view_server.home), cwd=tmp_path, expect=1)
    assert "ended in failure: 1 of 3 jobs succeeded, 1 failed, 1 cancelled" in result.stderr
    assert "job 2 (second): Failed: the command exited with code 1" in result.stderr
    assert "corral job log" in result.stderr
    as_json = run_corral(
        ["run", "--json", str(script)], env=corral_env(user_view_server.home), cwd=tmp_path, expect=1
    )
    report = json.loads(as_json.stdout)
    assert report["ok"] is False and report["batches"][0]["n_failed"] == 1


def test_resume_reruns_only_what_failed_or_was_cancelled(
    user_view_server: RunningServer, tmp_path: Path
) -> None:
    script = _script(tmp_path, PIPELINE)
    env = corral_env(user_view_server.home)
    failed = subprocess.run([sys.executable, str(script)], env=env, cwd=tmp_path, capture_output=True,
                            text=True, timeout=300)
    # Plain Python: the failure summary (which jobs, why, how to see logs), exit 1, and no traceback.
    assert failed.returncode == 1, failed.stderr
    assert "ended in failure: 1 of 3 jobs succeeded, 1 failed, 1 cancelled" in failed.stderr
    assert "job 2 (second): Failed: the command exited with code 1" in failed.stderr
    assert "corral job log" in failed.stderr
    assert_no_traceback(failed.stderr, failed.stdout)
    with user_view_server.client() as c:
        first_id = c.get("/api/v1/batches", params={"limit": 1}).json()["batches"][0]["id"]

    env["FAIL_SECOND"] = "0"
    ok = run_corral(["run", str(script), str(first_id)], env=env, cwd=tmp_path, expect=0)
    second_id = int(ok.stdout.split("BATCH")[1].split()[0])
    resumed = user_view_server.batch(second_id)
    # Only the failed job and its cancelled child ran again; `second` read `first`'s file from the first run.
    assert (resumed["n_jobs"], resumed["n_succeeded"], resumed["state"]) == (2, 2, "success")
    assert resumed["attributes"]["resumed_from"] == str(first_id)
    names = sorted(j["name"] for j in user_view_server.jobs(second_id).values())
    assert names == ["second", "third"]


def test_other_errors_keep_their_traceback_under_plain_python(
    user_view_server: RunningServer, tmp_path: Path
) -> None:
    """The hook the library installs for BatchFailed hands every other exception to Python's own."""
    script = _script(tmp_path, """
        import corral
        from corral.client.errors import BatchFailed

        b = corral.Batch(name="caught", backend=corral.ServiceBackend())
        b.new_job("fails").command("exit 4")
        try:
            b.run(progress=False, timeout=120)
        except BatchFailed as exc:
            print("CAUGHT", exc.batch_id)

        def parse(text):
            return int(text)

        parse("not a number")
    """, name="other_error.py")
    done = subprocess.run([sys.executable, str(script)], env=corral_env(user_view_server.home),
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert "CAUGHT" in done.stdout  # the batch failed and raised; the script went on
    assert done.returncode == 1
    assert "Traceback (most recent call last)" in done.stderr
    assert 'other_error.py", line' in done.stderr and "in parse" in done.stderr
    assert "ValueError: invalid literal for int() with base 10: 'not a number'" in done.stderr
    assert "corral:" not in done.stderr  # not mistaken for a batch failure


def test_an_error_in_the_users_pipeline_shows_their_frames_and_exits_6(
    user_view_server: RunningServer, tmp_path: Path
) -> None:
    script = _script(tmp_path, """
        import corral

        def build(b):
            j = b.new_job("x")
            j.timout(10)

        build(corral.Batch(backend=corral.ServiceBackend()))
    """)
    result = run_corral(["run", str(script)], env=corral_env(user_view_server.home), cwd=tmp_path, expect=6)
    assert f'File "{script}", line 6, in build' in result.stderr
    assert "j.timout(10)" in result.stderr
    assert "pipeline.py raised AttributeError: Job has no attribute 'timout'; did you mean 'timeout'?" in (
        result.stderr.replace("\n", " ")
    )
    assert "runpy" not in result.stderr


def test_a_corral_error_in_the_pipeline_is_one_line_plus_the_users_frame(
    user_view_server: RunningServer, tmp_path: Path
) -> None:
    script = _script(tmp_path, """
        import corral
        b = corral.Batch(backend=corral.ServiceBackend())
        b.new_job("x").command("true").cpu("lots")
    """)
    result = run_corral(["run", str(script)], env=corral_env(user_view_server.home), cwd=tmp_path, expect=6)
    assert f'File "{script}", line 4' in result.stderr
    assert "'lots' is not a cpu count" in result.stderr


LOCAL_SCRIPT = """
import sys, time
import corral

backend = corral.LocalBackend(home=sys.argv[1], workers=1, cores=2)
b = corral.Batch(name=sys.argv[2], backend=backend)
for i in range(int(sys.argv[3])):
    b.new_job(f"s{i}").command(f"sleep {sys.argv[4]}")
handle = b.run(progress=False, timeout=240)
print("DONE", handle.id, handle.status()["state"], flush=True)
"""


def test_two_local_backend_scripts_at_once_both_finish(tmp_path: Path) -> None:
    """The script that started the embedded server ends first; the one that attached to it still
    finishes (on the old main the first one stopped the server under the second)."""
    home = tmp_path / "shared-home"
    script = _script(tmp_path, LOCAL_SCRIPT, "local.py")
    env = corral_env()
    starter = subprocess.Popen([sys.executable, str(script), str(home), "starter", "1", "4"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    joiner: subprocess.Popen[str] | None = None
    try:
        deadline = time.monotonic() + 120
        while not (home / "server.url").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        joiner = subprocess.Popen([sys.executable, str(script), str(home), "joiner", "4", "2"], env=env,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first_out, first_err = starter.communicate(timeout=300)
        assert starter.returncode == 0, first_err
        assert joiner.poll() is None, "the joiner should still be running when the starter ends"
        out, err = joiner.communicate(timeout=300)
    finally:
        for proc in (starter, joiner):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait()
    assert "DONE" in first_out and "success" in first_out
    assert joiner.returncode == 0, err
    assert "DONE" in out and "success" in out
    assert_no_traceback(err, first_err)
    # The last one out stopped the server they shared: nothing is left running for the home.
    assert not (home / "server.url").exists()
    assert not list((home / "clients").glob("*"))
