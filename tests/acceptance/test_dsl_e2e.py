"""The Python DSL and the CLI end to end: LocalBackend starts a real server with real local workers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

import corral
from corral.cli.demo import TOTAL_WORDS, build_demo, check, top_words

pytestmark = pytest.mark.slow


@pytest.fixture
def backend(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[corral.LocalBackend]:
    for name in [k for k in os.environ if k.startswith("CORRAL_")]:
        monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    with corral.LocalBackend(home=tmp_path / "home", workers=1, cores=2) as local:
        yield local


def test_readme_example_runs_and_writes_its_output(backend: corral.LocalBackend, tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("".join(f"line {i}\n" for i in range(8)))
    b = corral.Batch(name="wc", backend=backend)
    a = b.new_job("split")
    a.command(f"split -n l/4 {b.read_input('data.txt')} /io/part-; cat /io/part-* > {a.ofile}")
    c = b.new_job("count").depends_on(a).cpu(0.5).memory("256Mi").timeout(60)
    c.command(f"wc -l {a.ofile} > {c.ofile}")
    b.write_output(c.ofile, "out/count.txt")
    result = b.run(progress=False, timeout=120)
    status = result.status()
    assert status["state"] == "success", (status, [result.log(j["job_id"]) for j in result.jobs()])
    assert [j["state"] for j in result.jobs()] == ["Success", "Success"]
    assert (tmp_path / "out" / "count.txt").read_text().split()[0] == "8"
    assert "main" in result.log(2)


def test_demo_pipeline_behaves_as_designed(backend: corral.LocalBackend, tmp_path: Path) -> None:
    b = corral.Batch(name="demo", backend=backend)
    demo = build_demo(b, tmp_path / "demo-out", slices=20)
    handle = b.run(progress=False, timeout=300, check=False)  # one job fails by design
    states = {j["job_id"]: j["state"] for j in handle.jobs()}
    assert check(demo, states) == []
    status = handle.status()
    assert status["state"] == "failure" and status["n_jobs"] == 25
    assert (status["n_succeeded"], status["n_failed"], status["n_cancelled"]) == (23, 1, 1)
    counts = top_words(demo.output, n=10**6)
    assert sum(c for _, c in counts) == TOTAL_WORDS
    assert counts == sorted(counts, key=lambda wc: (-wc[1], wc[0]))
    assert demo.failing is not None and demo.failing.job_id is not None
    assert handle.job(demo.failing.job_id)["exit_code"] == 3


def test_a_second_local_backend_reuses_the_running_server(
    backend: corral.LocalBackend, tmp_path: Path
) -> None:
    url = backend.url
    assert backend.started_server
    with corral.LocalBackend(home=tmp_path / "home") as again:
        assert again.url == url and not again.started_server
        b = corral.Batch(backend=again)
        b.new_job("hello").command("echo hello")
        assert b.run(progress=False, timeout=60).status()["state"] == "success"


def test_jobs_appended_to_an_existing_batch_run(backend: corral.LocalBackend) -> None:
    b = corral.Batch(backend=backend)
    first = b.new_job("first")
    first.command(f"echo 1 > {first.ofile}")
    handle = b.run(progress=False, timeout=60)
    more = corral.Batch.from_batch_id(handle.id, backend)
    more.new_job("second").command("echo 2")
    more.run(progress=False, timeout=60)
    assert [j["state"] for j in handle.jobs()] == ["Success", "Success"]


def _cli(home: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env["CORRAL_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "corral", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )


def test_cli_demo_and_batch_commands(tmp_path: Path) -> None:
    home = tmp_path / "home"
    demo = _cli(home, tmp_path, "demo", "--json", "--cores", "2", "--slices", "5")
    assert demo.returncode == 0, demo.stdout + demo.stderr
    report = json.loads(demo.stdout)
    assert report["problems"] == [] and report["batch"]["state"] == "failure"
    assert (tmp_path / "corral-demo-out" / "wordcounts.txt").exists()
    # The demo stopped the server it started; start one for the read commands.
    with corral.LocalBackend(home=home) as local:
        local.client()
        batch_id = str(report["batch"]["id"])
        got = _cli(home, tmp_path, "batch", "get", batch_id, "--json")
        assert got.returncode == 0, got.stderr
        assert json.loads(got.stdout)["n_jobs"] == 5 + 5
        log = _cli(home, tmp_path, "job", "log", batch_id, "1", "--step", "main")
        assert log.returncode == 0 and "generated" in log.stdout
        missing = _cli(home, tmp_path, "batch", "get", "999999")
        assert missing.returncode == 1 and "999999" in missing.stderr
