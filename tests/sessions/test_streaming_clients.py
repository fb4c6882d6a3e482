"""The streaming clients against fakes: the `ollama` client against a faithful fake of Ollama's documented
API (no Ollama server exists here), and the `openai` client counting an HTTP 200 with an empty stream
as a failure (zero successful samples: no latency, never a zero)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from tests.sessions.fake_ollama import MODEL, make_app, make_openai_empty_app

from corral.sessions.measure import summarize
from corral.sessions.recipe import ClientConfig
from corral.sessions.registry import REGISTRY, Endpoint


def _serve(app: Any) -> Iterator[Endpoint]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield Endpoint("127.0.0.1", port, f"http://127.0.0.1:{port}", {"main": port})
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def ollama() -> Iterator[Endpoint]:
    yield from _serve(make_app())


@pytest.fixture(scope="module")
def empty_openai() -> Iterator[Endpoint]:
    yield from _serve(make_openai_empty_app())


def test_ollama_client_measures_streamed_tokens(ollama: Endpoint) -> None:
    config = ClientConfig.model_validate(
        {
            "type": "ollama",
            "params": {"model": MODEL, "max_tokens": 8},
            "load": {"concurrency": 2},
            "warmup": {"requests": 2},
            "stop": {"min_duration": 0.2, "min_requests": 10},
        }
    )
    run = REGISTRY.client_type("ollama", "clients[0].type").run(config, ollama, seed=1)
    metrics = summarize(run)
    assert run.n >= 10 and run.failures == 0 and run.warmup["requests"] == 2
    assert metrics["tokens_per_s"][0] is not None and metrics["tokens_per_s"][0] > 0
    assert 0 < metrics["ttft_p50_ms"][0] <= metrics["p50_ms"][0]  # type: ignore[operator]
    assert metrics["itl_mean_ms"][0] is not None and metrics["itl_mean_ms"][0] > 0
    assert all(s[3]["tokens"] == 8 for s in run.samples)


def test_ollama_client_counts_an_unknown_model_as_failures(ollama: Endpoint) -> None:
    config = ClientConfig.model_validate(
        {
            "type": "ollama",
            "params": {"model": "nope"},
            "stop": {"min_duration": 0.1, "min_requests": 3},
        }
    )
    run = REGISTRY.client_type("ollama", "c").run(config, ollama, seed=1)
    metrics = summarize(run)
    assert run.failures == run.n >= 3
    assert metrics["p50_ms"][0] is None and metrics["throughput"][0] is None


def test_openai_client_counts_an_empty_200_stream_as_a_failure(empty_openai: Endpoint) -> None:
    config = ClientConfig.model_validate(
        {
            "type": "openai",
            "load": {"rate": 50},
            "stop": {"min_duration": 0.1, "min_requests": 5},
        }
    )
    run = REGISTRY.client_type("openai", "c").run(config, empty_openai, seed=3)
    metrics = summarize(run)
    assert run.n >= 5 and run.failures == run.n
    assert (
        metrics["p99_ms"][0] is None
        and metrics["ttft_p50_ms" if "ttft_p50_ms" in metrics else "p50_ms"][0] is None
    )
    assert metrics["error_rate"][0] == 1.0
