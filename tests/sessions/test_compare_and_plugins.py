"""`corral bench compare` catches an injected regression and passes an identical rerun; a third-party
type registered through an entry point (a test distribution on sys.path) is found by name."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import corral
from corral import bench
from corral.sessions.registry import Registry
from corral.sessions.runner import compare_sessions

pytestmark = pytest.mark.slow

DELAY_SERVER = (
    'exec python3 -c "import http.server, os, time\n'
    "class H(http.server.BaseHTTPRequestHandler):\n"
    "    def do_GET(self):\n"
    "        time.sleep({delay}); self.send_response(200); self.send_header('Content-Length', '2')\n"
    "        self.end_headers(); self.wfile.write(b'ok')\n"
    "    def log_message(self, *a): pass\n"
    "http.server.ThreadingHTTPServer(('0.0.0.0', int(os.environ['CORRAL_PORT_MAIN'])), H).serve_forever()\""
)


def recipe(delay: float) -> dict[str, Any]:
    return {
        "name": f"delay-{delay}",
        "service": {
            "type": "command",
            "command": DELAY_SERVER.format(delay=delay),
            "ready": {"deadline": 30},
        },
        "clients": [
            {
                "type": "http",
                "load": {"concurrency": 2},
                "warmup": {"requests": 5},
                "stop": {"min_duration": 0.5, "min_requests": 30},
            }
        ],
        "repetitions": 2,
    }


def _compare_cli(a: Path, b: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "corral",
            "bench",
            "compare",
            str(a),
            str(b),
            "--tolerance",
            "0.5",
            "--metric",
            "p50_ms",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _why(backend: corral.LocalBackend, outcome: bench.SessionOutcome) -> object:
    """What a failed session's jobs say (for the assertion message)."""
    if outcome.state == "success":
        return outcome.state
    client = backend.client()
    jobs = client.run(client.aio.list_jobs(outcome.batch_id)).jobs
    errors = {}
    for j in jobs:
        if j.state != "Success":
            status = client.run(client.aio.get_job(outcome.batch_id, j.job_id)).model_dump()
            logs = client.run(client.aio.job_logs(outcome.batch_id, j.job_id))
            errors[j.job_id] = (j.state, str(status.get("status"))[-800:], str(logs)[-1500:])
    return outcome, errors


def test_compare_detects_a_regression_and_passes_an_identical_rerun(
    backend: corral.LocalBackend,
    tmp_path: Path,
) -> None:
    base = bench.run(recipe(0.05), backend, out_dir=tmp_path / "base", timeout=300)
    again = bench.run(recipe(0.05), backend, out_dir=tmp_path / "again", timeout=300)
    slow = bench.run(recipe(0.25), backend, out_dir=tmp_path / "slow", timeout=300)
    outcomes = (base, again, slow)
    assert {o.state for o in outcomes} == {"success"}, [_why(backend, o) for o in outcomes]
    same = _compare_cli(tmp_path / "base", tmp_path / "again")
    assert same.returncode == 0, same.stdout + same.stderr
    assert json.loads(same.stdout)["regressions"] == 0
    worse = _compare_cli(tmp_path / "base", tmp_path / "slow")
    assert worse.returncode == 3, worse.stdout + worse.stderr
    found = json.loads(worse.stdout)["comparisons"]
    assert found[0]["metric"] == "p50_ms" and found[0]["delta"] > 1.0 and found[0]["regression"]
    # The same through the server's stored results, by session id.
    rows = compare_sessions(backend.client(), str(base.id), str(slow.id), tolerance=0.5, metrics=["p50_ms"])
    assert [r.regression for r in rows] == [True]


PLUGIN = """
from corral.sessions.registry import ServiceType


class EchoService(ServiceType):
    name = "echo-plugin"
    description = "a third-party test service"

    def command(self, config):
        return "exec sleep 600"
"""


def test_third_party_type_from_an_entry_point(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "corral_echo_plugin.py").write_text(PLUGIN)
    dist = tmp_path / "corral_echo_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: corral-echo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(
        "[corral.bench.services]\necho-plugin = corral_echo_plugin:EchoService\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry()
    service = registry.service_type("echo-plugin")
    assert service.description == "a third-party test service"
    assert registry.origins["corral.bench.services:echo-plugin"] == "corral_echo_plugin:EchoService"
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "corral", "bench", "types", "--json"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    listed = {t["name"]: t for t in json.loads(out.stdout)}
    assert listed["echo-plugin"]["origin"] == "corral_echo_plugin:EchoService"
    assert listed["redis"]["origin"] == "built-in"


def test_cli_refuses_a_bad_recipe_naming_the_field(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\nservice: {type: redis}\nclients:\n  - type: wrk\n    load: {concurency: 4}\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    out = subprocess.run(
        [sys.executable, "-m", "corral", "bench", "run", str(bad)],
        capture_output=True,
        text=True,
        env={**env, "CORRAL_HOME": str(tmp_path / "home")},
        timeout=60,
    )
    assert out.returncode == 1
    assert "clients[0].load.concurency" in out.stderr and "Traceback" not in out.stderr
