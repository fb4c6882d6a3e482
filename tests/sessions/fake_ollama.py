"""A faithful fake of Ollama's documented HTTP API (docs/api.md of ollama/ollama), for the parts the
`ollama` client uses: GET /api/version, GET /api/tags, POST /api/generate (streamed NDJSON objects, the
last with "done": true and its counters; an unknown model is a 404 {"error": ...}).

What it cannot prove: that a real model answers, real timings, or Ollama's behaviour under load; the
tokens are a fixed text split in words, sent with a small delay so the client's timing has work to do.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

MODEL = "smollm2:135m"
WORDS = ["The", "sea", "is", "wide", "and", "calm", "under", "a", "grey", "sky", "today"]


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def make_app(token_delay: float = 0.002, empty: bool = False) -> FastAPI:
    app = FastAPI()

    @app.get("/api/version")
    async def version() -> dict[str, str]:
        return {"version": "0.12.6"}

    @app.get("/api/tags")
    async def tags() -> dict[str, Any]:
        return {
            "models": [
                {
                    "name": MODEL,
                    "model": MODEL,
                    "modified_at": _now(),
                    "size": 98_000_000,
                    "digest": "0" * 64,
                    "details": {
                        "format": "gguf",
                        "family": "llama",
                        "parameter_size": "135M",
                        "quantization_level": "Q4_1",
                    },
                }
            ]
        }

    @app.post("/api/generate")
    async def generate(request: Request) -> Any:
        body = await request.json()
        if body.get("model") != MODEL:
            return JSONResponse({"error": f"model '{body.get('model')}' not found"}, status_code=404)
        n = int((body.get("options") or {}).get("num_predict") or 16)
        words = [] if empty else (WORDS * 4)[:n]
        start = time.monotonic_ns()

        async def stream() -> AsyncIterator[bytes]:
            for word in words:
                await asyncio.sleep(token_delay)
                yield (
                    json.dumps({"model": MODEL, "created_at": _now(), "response": word + " ", "done": False})
                    + "\n"
                ).encode()
            took = time.monotonic_ns() - start
            yield (
                json.dumps(
                    {
                        "model": MODEL,
                        "created_at": _now(),
                        "response": "",
                        "done": True,
                        "done_reason": "length" if len(words) >= n else "stop",
                        "context": [1, 2, 3],
                        "total_duration": took,
                        "load_duration": 1000,
                        "prompt_eval_count": 8,
                        "prompt_eval_duration": 1000,
                        "eval_count": len(words),
                        "eval_duration": took,
                    }
                )
                + "\n"
            ).encode()

        if body.get("stream") is False:
            text = "".join(w + " " for w in words)
            return {
                "model": MODEL,
                "created_at": _now(),
                "response": text,
                "done": True,
                "eval_count": len(words),
            }
        return StreamingResponse(stream(), media_type="application/x-ndjson")

    return app


def make_openai_empty_app() -> FastAPI:
    """An OpenAI-compatible server whose streams end at once with HTTP 200 and no tokens (the failure
    llama.cpp shows when a new request interrupts one in flight)."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat() -> Any:
        async def stream() -> AsyncIterator[bytes]:
            yield b'data: {"choices": [{"index": 0, "delta": {"role": "assistant"}}]}\n\n'
            yield b"data: [DONE]\n\n"

        return StreamingResponse(stream(), media_type="text/event-stream")

    return app
