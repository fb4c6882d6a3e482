"""Measuring on the client: a load loop (closed loop or Poisson open loop, seeded) that runs until BOTH
the minimum duration and the minimum request count are met, and the metrics of a run's samples.

Honest numbers: warm-up requests are excluded from the metrics but recorded; failures are counted;
percentiles are over the whole measured run; a run with no successful sample has no latency (None),
never a zero.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from corral.sessions.recipe import Load, Stop, Warmup
from corral.sessions.registry import ClientRun

# A request: returns (ok, extras such as ttft_ms); its latency is measured around it.
Request = Callable[[int], Awaitable[tuple[bool, dict[str, float]]]]

METRIC_DEFINITIONS = {
    "n": "requests measured (warm-up excluded), successful or not",
    "failures": "measured requests that failed (error, non-success status, empty stream)",
    "throughput": "successful requests per second of measured wall time (first start to last end)",
    "p50_ms": "median latency of successful requests, client-side, start of request to last byte",
    "p90_ms": "90th percentile of the same latencies (over the whole measured run)",
    "p99_ms": "99th percentile of the same latencies (over the whole measured run)",
    "mean_ms": "mean of the same latencies",
    "error_rate": "failures / n",
    "ttft_p50_ms": "median time to first token (first non-empty streamed content), client-side",
    "ttft_p99_ms": "99th percentile time to first token",
    "itl_mean_ms": "mean inter-token latency: gaps between streamed content chunks after the first",
    "tpot_mean_ms": "mean time per output token after the first: (latency - ttft) / (tokens - 1)",
    "tokens_per_s": "output tokens (streamed content chunks) per second of measured wall time, all requests",
    "goodput": "requests per second that succeeded AND met the client's ttft/tpot SLO parameters",
}


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (numpy's default); None without values."""
    if not values:
        return None
    ordered = sorted(values)
    pos = (len(ordered) - 1) * q / 100
    low, high = math.floor(pos), math.ceil(pos)
    return ordered[low] + (ordered[high] - ordered[low]) * (pos - low)


def summarize(run: ClientRun) -> dict[str, tuple[float | None, str]]:
    """Metrics of a run: from its samples when it has them, else the tool's own (which it must have)."""
    metrics: dict[str, tuple[float | None, str]] = dict(run.metrics)
    if run.samples:
        ok = [s for s in run.samples if s[2]]
        latencies = [s[1] for s in ok]
        run.n, run.failures = len(run.samples), len(run.samples) - len(ok)
        start = min(s[0] for s in run.samples)
        end = max(s[0] + s[1] / 1000 for s in run.samples)
        wall = max(end - start, 1e-9)
        metrics.update(
            {
                "throughput": (len(ok) / wall if ok else None, "req/s"),
                "p50_ms": (percentile(latencies, 50), "ms"),
                "p90_ms": (percentile(latencies, 90), "ms"),
                "p99_ms": (percentile(latencies, 99), "ms"),
                "mean_ms": (sum(latencies) / len(latencies) if latencies else None, "ms"),
            }
        )
        extras: dict[str, list[float]] = {}
        for s in ok:
            for key, value in s[3].items():
                extras.setdefault(key, []).append(value)
        if "ttft_ms" in extras:
            metrics["ttft_p50_ms"] = (percentile(extras["ttft_ms"], 50), "ms")
            metrics["ttft_p99_ms"] = (percentile(extras["ttft_ms"], 99), "ms")
        for key in ("itl_ms", "tpot_ms"):
            if key in extras:
                values = extras[key]
                metrics[f"{key[:-3]}_mean_ms"] = (sum(values) / len(values), "ms")
        if "tokens" in extras:
            metrics["tokens_per_s"] = (sum(extras["tokens"]) / wall, "tok/s")
        if "good" in extras:
            metrics["goodput"] = (sum(extras["good"]) / wall, "req/s")
        run.duration_s = wall
    metrics["n"] = (float(run.n), "count")
    metrics["failures"] = (float(run.failures), "count")
    metrics["error_rate"] = (run.failures / run.n if run.n else None, "ratio")
    if not run.n or metrics.get("throughput", (None, ""))[0] in (None, 0.0):
        for key in ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "throughput"):
            if key in metrics and not metrics[key][0]:
                metrics[key] = (None, metrics[key][1])  # zero samples: no latency, never a zero
    return metrics


def timeseries(
    samples: list[tuple[float, float, bool, dict[str, float]]], warm: int
) -> list[dict[str, float]]:
    """Per-second completions, errors and mean latency, warm-up marked (phase 0) from measured (1)."""
    buckets: dict[int, list[Any]] = {}
    for index, (start, latency, ok, _) in enumerate(samples):
        second = int(start + latency / 1000)
        b = buckets.setdefault(second, [0, 0, 0.0, 1])
        b[0] += 1
        b[1] += 0 if ok else 1
        b[2] += latency
        if index < warm:
            b[3] = 0
    return [
        {"t": float(t), "completed": b[0], "errors": b[1], "mean_ms": b[2] / b[0], "measured": b[3]}
        for t, b in sorted(buckets.items())
    ]


async def drive(request: Request, load: Load, stop: Stop, warmup: Warmup, seed: int) -> ClientRun:
    """Warm up (count and/or time, recorded apart), then load until min duration AND min requests."""
    rng = random.Random(seed)
    origin = time.monotonic()
    samples: list[tuple[float, float, bool, dict[str, float]]] = []
    warm_samples: list[tuple[float, float, bool, dict[str, float]]] = []
    counter = 0

    async def one(into: list[tuple[float, float, bool, dict[str, float]]]) -> None:
        nonlocal counter
        counter += 1
        t0 = time.monotonic()
        try:
            ok, extras = await request(counter)
        except Exception as exc:  # a failed request is a sample, not a crash
            ok, extras = False, {}
            into_errors.append(repr(exc)[:300])
        into.append((t0 - origin, (time.monotonic() - t0) * 1000, ok, extras))

    into_errors: list[str] = []
    warm_end = time.monotonic() + warmup.duration
    while len(warm_samples) < warmup.requests or time.monotonic() < warm_end:
        await one(warm_samples)
    measured_start = time.monotonic()
    hard_end = measured_start + stop.max_duration

    def done() -> bool:
        now = time.monotonic()
        enough = now - measured_start >= stop.min_duration and len(samples) >= stop.min_requests
        return enough or now >= hard_end

    if load.rate is not None:  # open loop: Poisson arrivals, independent of completions
        in_flight: set[asyncio.Task[None]] = set()
        next_at = time.monotonic()
        while not done():
            next_at += rng.expovariate(load.rate)
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))
            task = asyncio.create_task(one(samples))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
        await asyncio.gather(*in_flight)
    else:

        async def worker() -> None:
            while not done():
                await one(samples)

        await asyncio.gather(*(worker() for _ in range(load.concurrency or 1)))
    run = ClientRun(samples=samples)
    run.warmup = {
        "requests": len(warm_samples),
        "failures": sum(1 for s in warm_samples if not s[2]),
        "seconds": round(measured_start - origin, 3),
        "mean_ms": (sum(s[1] for s in warm_samples) / len(warm_samples)) if warm_samples else None,
    }
    run.timeseries = timeseries([*warm_samples, *samples], len(warm_samples))
    if into_errors:
        run.error = f"{len(into_errors)} request errors, first: {into_errors[0]}"
    return run
