"""Benchmark sessions end to end on the embedded default (real server, local workers, real programs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from tests.services.conftest import need

import corral
from corral import bench
from corral.errors import InvalidInput
from corral.sessions.runner import get_results, get_session

pytestmark = pytest.mark.slow


def redis_recipe(**extra: Any) -> dict[str, Any]:
    recipe: dict[str, Any] = {
        "name": "redis-smoke",
        "service": {"type": "redis", "resources": {"cpu": 0.5}, "ready": {"deadline": 60}},
        "clients": [
            {
                "type": "redis-benchmark",
                "load": {"concurrency": 4},
                "resources": {"cpu": 0.5},
                "stop": {"min_duration": 0.5, "min_requests": 2000},
                "warmup": {"requests": 500},
            }
        ],
        "seed": 11,
        "slo": [{"metric": "p99_ms", "max": 1000}],
        "references": [{"metric": "throughput", "value": 1.0, "tolerance": 1000000}],
    }
    recipe.update(extra)
    return recipe


def test_redis_matrix_session_writes_results_store_parquet_and_report(
    backend: corral.LocalBackend, tmp_path: Path
) -> None:
    need("redis-server", "redis-benchmark", "redis-cli")
    recipe = redis_recipe(
        matrix={"service": {"io_threads": [1, 2]}, "client": {"concurrency": [1, 2, 4]}}, repetitions=2
    )
    lines: list[str] = []
    outcome = bench.run(recipe, backend, out_dir=tmp_path / "report", progress=lines.append, timeout=600)
    assert outcome.state == "success", outcome
    assert outcome.failed_cells == []
    assert any("cell" in line and "clients" in line for line in lines)
    client = backend.client()
    session = get_session(client, outcome.id)
    assert session["state"] == "success" and session["recipe_hash"]
    rows = get_results(client, outcome.id, metric="throughput")
    assert {r["cell"] for r in rows} == {f"c{i}" for i in range(1, 7)}
    assert {r["repetition"] for r in rows} == {1, 2} and all(r["value"] > 0 for r in rows)
    assert {json.dumps(r["params"], sort_keys=True) for r in rows if r["cell"] == "c4"} == {
        json.dumps({"io_threads": 2, "concurrency": 1}, sort_keys=True)
    }
    # Two service jobs per repetition (one per service cell), three chained client jobs on each.
    jobs = list(client.iter_jobs(outcome.batch_id))
    services = [j for j in jobs if j.name and j.name.startswith("svc-")]
    assert len(services) == 4 and {j.state for j in jobs} == {"Success"}
    table = pq.read_table(tmp_path / "report" / f"session-{outcome.id}.parquet").to_pylist()
    assert {r["metric"] for r in table} >= {"throughput", "p50_ms", "p99_ms", "n", "failures"}
    html = (tmp_path / "report" / "report.html").read_text()
    assert "c6" in html and "data:image/png;base64," in html and "mean" in html
    manifest = json.loads((tmp_path / "report" / "manifest.json").read_text())
    assert manifest["recipe_hash"] == session["recipe_hash"] and manifest["seed"] == 11
    assert manifest["host"]["kernel"] and len(manifest["seeds"]) == 12
    for png in ("latency_vs_throughput.png", "percentiles.png", "timeseries.png"):
        assert (tmp_path / "report" / "plots" / png).stat().st_size > 1000
    results = json.loads((tmp_path / "report" / "results.json").read_text())
    c1 = results["cells"]["c1/redis-benchmark"]["metrics"]["throughput"]
    assert len(c1["values"]) == 2 and c1["ci95"] is not None
    assert all(v["passed"] for v in results["verdicts"])


def test_service_that_never_gets_ready_fails_the_session_with_the_probe_error(
    backend: corral.LocalBackend, tmp_path: Path
) -> None:
    recipe = {
        "name": "never-ready",
        "service": {"type": "command", "command": "exec sleep 300", "ready": {"deadline": 2}},
        "clients": [{"type": "http", "stop": {"min_duration": 0.2, "min_requests": 1}}],
    }
    outcome = bench.run(recipe, backend, out_dir=tmp_path / "r", timeout=300)
    assert outcome.state == "failure" and outcome.failed_cells == ["c1/http"]
    html = (tmp_path / "r" / "report.html").read_text()
    assert "not ready after 2s" in html
    status = backend.client().get_batch(outcome.batch_id)
    assert status.complete and status.n_failed >= 1


def test_bad_recipe_is_refused_naming_the_field(backend: corral.LocalBackend) -> None:
    bad = redis_recipe()
    bad["clients"][0]["lod"] = {"concurrency": 2}
    with pytest.raises(InvalidInput) as err:
        bench.run(bad, backend)
    assert "clients[0].lod" in str(err.value)
    client = backend.client()
    r = client.run(
        client.aio._http.post(
            "/api/v1/bench/recipes/validate",
            json=redis_recipe(service={"type": "redis", "params": {"threads": 2}}),
        )
    )
    assert r.status_code == 400 and r.json()["field"] == "service.params.threads"


def test_nginx_wrk_session(backend: corral.LocalBackend, tmp_path: Path) -> None:
    need("nginx", "wrk")
    recipe = {
        "name": "nginx-wrk",
        "service": {"type": "nginx", "params": {"body_bytes": 1024}, "ready": {"deadline": 60}},
        "clients": [
            {
                "type": "wrk",
                "load": {"concurrency": 4},
                "warmup": {"duration": 1},
                "stop": {"min_duration": 1, "min_requests": 200},
            }
        ],
    }
    outcome = bench.run(recipe, backend, out_dir=tmp_path / "r", timeout=300)
    assert outcome.state == "success", outcome
    rows = {r["metric"]: r["value"] for r in get_results(backend.client(), outcome.id)}
    assert rows["throughput"] > 0 and rows["n"] >= 200 and rows["failures"] == 0
    assert 0 < rows["p50_ms"] <= rows["p90_ms"] <= rows["p99_ms"]


def test_postgres_pgbench_session(backend: corral.LocalBackend, tmp_path: Path) -> None:
    need("pgbench", "pg_isready", "runuser")
    recipe = {
        "name": "pg",
        "service": {"type": "postgres", "ready": {"deadline": 120}},
        "clients": [
            {
                "type": "pgbench",
                "params": {"select_only": True},
                "load": {"concurrency": 2},
                "stop": {"min_duration": 1, "min_requests": 100},
            }
        ],
    }
    outcome = bench.run(recipe, backend, out_dir=tmp_path / "r", timeout=300)
    assert outcome.state == "success", (outcome, (tmp_path / "r" / "report.html").read_text()[-3000:])
    rows = {r["metric"]: r["value"] for r in get_results(backend.client(), outcome.id)}
    assert rows["throughput"] > 0 and rows["n"] >= 100
    assert 0 < rows["p50_ms"] <= rows["p99_ms"]
