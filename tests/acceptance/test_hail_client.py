"""The stock `hailtop.batch` client (pinned hail, its own venv) against a real `corral server
--hail-compat-dir DIR` over HTTPS with real local workers. Each scenario script runs as a subprocess
that sets only HAIL_DEPLOY_CONFIG_FILE, HAIL_TOKENS_FILE and SSL_CERT_FILE (plus what the test needs
to look at the results); its asserts are the behaviour under test."""

from __future__ import annotations

import json
import os
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from tests.acceptance.harness import RunningServer

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = Path(__file__).parent / "hail_scenarios"


@pytest.fixture(scope="module")
def hail_python() -> str:
    """The client's python, installed by the project's own script (fails in CI when it cannot)."""
    try:
        out = subprocess.run(
            [str(ROOT / "scripts" / "hail-client.sh")],
            check=True, capture_output=True, text=True, timeout=900,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        if os.environ.get("CI") == "true":
            pytest.fail(f"the stock hail client is required in CI and did not install: {detail}")
        pytest.skip(f"the stock hail client did not install: {detail}")
    return out.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="module")
def hail_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("hail-home")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CORRAL_", "HAIL_"))}
    env.update({
        "CORRAL_HOME": str(home),
        "CORRAL_PORT": "0",
        "CORRAL_URL_FILE": str(home / "server.url"),
        "CORRAL_LOCAL_WORKERS": "1",
        # A logical offer: hailtop asks 1 core and "standard" memory (~3.75 GiB) per job by default.
        "CORRAL_LOCAL_WORKER_CORES": "4",
        "CORRAL_LOCAL_WORKER_MEMORY": "32Gi",
        "CORRAL_HEARTBEAT_INTERVAL": "0.5",
        "CORRAL_HAIL_COMPAT_DIR": str(home / "hail"),
        "CORRAL_BILLING": '{"site": {"cpu_core_hour": 0.04, "memory_gib_hour": 0.005}}',
    })
    server = RunningServer(home, env)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _client_env(server: RunningServer) -> dict[str, str]:
    compat = server.home / "hail"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CORRAL_", "HAIL_", "VIRTUAL_ENV"))}
    env.update({
        "HAIL_DEPLOY_CONFIG_FILE": str(compat / "deploy-config.json"),
        "HAIL_TOKENS_FILE": str(compat / "tokens.json"),
        "SSL_CERT_FILE": str(compat / "ca.pem"),
        "CORRAL_TEST_BUCKET_DIR": str(server.home / "buckets" / "corral-local"),
        "CORRAL_TEST_ADMIN_TOKEN": server.admin_token,
        "PYTHONWARNINGS": "ignore",
        "HOME": str(server.home),  # no ~/.hail of the machine's user
    })
    return env


def run_scenario(python: str, server: RunningServer, name: str, timeout: float = 240) -> dict[str, Any]:
    try:
        done = subprocess.run(
            [python, "-u", str(SCENARIOS / name)], cwd=SCENARIOS, env=_client_env(server),
            capture_output=True, text=True, timeout=timeout,
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"{name} did not finish in {timeout}s:\n{exc.stdout}\n{exc.stderr}\n"
                             f"{server.log_tail()}") from None
    assert done.returncode == 0, f"{name} failed:\n{done.stdout}\n{done.stderr}\n{server.log_tail()}"
    results: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return results


def test_compat_dir_is_all_a_client_needs(hail_server: RunningServer) -> None:
    compat = hail_server.home / "hail"
    deploy = json.loads((compat / "deploy-config.json").read_text())
    assert deploy["location"] == "external" and deploy["default_namespace"] == "default"
    token = json.loads((compat / "tokens.json").read_text())["default"]
    assert (compat / "tokens.json").stat().st_mode & 0o077 == 0
    base = f"https://{deploy['domain']}{deploy['base_path']}/batch"
    context = ssl.create_default_context(cafile=str(compat / "ca.pem"))
    with httpx.Client(verify=context, headers={"Authorization": f"Bearer {token}"}) as client:
        assert client.get(f"{base}/healthcheck").status_code == 200
        projects = client.get(f"{base}/api/v1alpha/billing_projects").json()
        assert [p["billing_project"] for p in projects] == ["default"]
        assert client.get(f"{base}/api/v1alpha/batches/12345").status_code == 404
        assert client.get(f"{base}/api/v1alpha/unknown/route").status_code == 404
        assert client.post(f"{base}/api/v1alpha/batches/create-fast", content=b"{").status_code == 400
    with httpx.Client() as untrusting, pytest.raises(httpx.ConnectError):
        untrusting.get(f"{base}/healthcheck")  # the certificate is our own CA's, not a public one


def test_pipelines_run_unchanged(hail_python: str, hail_server: RunningServer) -> None:
    results = run_scenario(hail_python, hail_server, "pipelines.py")
    assert results["failure"] == {"bad": "Failed", "child": "Cancelled", "cleanup": "Success"}
    assert results["misc"]["found"] == {"slow": "Error", "env": "Success", "keep": "Failed"}
    assert "process sandbox" in results["misc"]["note"]  # the image stood in for, and the status says so
    bucket = hail_server.home / "buckets" / "corral-local"
    assert (bucket / "scatter" / "total.txt").read_text().strip() == "1225"


def test_batches_large_append_wait_query_cancel_delete(hail_python: str, hail_server: RunningServer) -> None:
    results = run_scenario(hail_python, hail_server, "batches.py")
    assert results["large"]["succeeded"] + results["large"]["cancelled"] == 1030
    assert results["cancel_delete"]["appended"] == "Success"


def test_low_level_client_dag_job_groups_billing(hail_python: str, hail_server: RunningServer) -> None:
    results = run_scenario(hail_python, hail_server, "lowlevel.py")
    outer = results["job_groups"]
    assert (outer["n_jobs"], outer["n_succeeded"], outer["n_cancelled"]) == (4, 3, 1)
    assert "Traceback" not in hail_server.log.read_text()  # no request ended in a server error


def test_billing_projects_and_cost_breakdown_through_the_stock_client(
    hail_python: str, hail_server: RunningServer
) -> None:
    results = run_scenario(hail_python, hail_server, "billing.py")
    assert results["lifecycle"] == "ok"
    assert all(line["cost"] > 0 for line in results["cost_breakdown"])


def test_restart_keeps_port_ca_and_batches(hail_server: RunningServer) -> None:
    """Runs last: a client's deploy config and trust stay valid across a server restart."""
    compat = hail_server.home / "hail"
    deploy_before, ca_before = (compat / "deploy-config.json").read_text(), (compat / "ca.pem").read_bytes()
    token = json.loads((compat / "tokens.json").read_text())["default"]
    hail_server.stop()
    hail_server.start()
    assert (compat / "deploy-config.json").read_text() == deploy_before
    assert (compat / "ca.pem").read_bytes() == ca_before
    assert json.loads((compat / "tokens.json").read_text())["default"] == token
    deploy = json.loads(deploy_before)
    base = f"https://{deploy['domain']}{deploy['base_path']}/batch"
    context = ssl.create_default_context(cafile=str(compat / "ca.pem"))
    with httpx.Client(verify=context, headers={"Authorization": f"Bearer {token}"}) as client:
        batches = client.get(f"{base}/api/v1alpha/batches", params={"q": "name=scatter"}).json()["batches"]
    assert len(batches) == 1 and batches[0]["state"] == "success"
