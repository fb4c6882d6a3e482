"""The markdown table: median, spread, ratio against the reference row, and targets met or missed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from bench.model import Result

RAW = "raw (xargs -P cores)"
SANDBOX_FLOOR = "Corral's sandbox alone (no Corral)"  # bench/peers/sandbox_floor.py
HOST = "Corral (host runtime)"
HAIL = "Hail Batch LocalBackend"


@dataclass(frozen=True)
class Target:
    workload: str
    system: str
    metric: str
    text: str
    met: Callable[[float], bool]
    on_ratio: bool = False  # judged on the ratio column rather than the value
    worst: float | None = None  # and no sample above this (lower-is-better targets)
    versus: str | None = None  # judged on the value over this system's (same workload and metric)


TARGETS = [
    Target("W1", "Corral (SQLite)", "throughput", "≥ 2,000 jobs/s", lambda v: v >= 2000),
    Target("W1", "Corral (PostgreSQL)", "throughput", "≥ 1,000 jobs/s", lambda v: v >= 1000),
    Target("W2", "Corral (SQLite)", "batch accepted", "≤ 3 s, no sample over 5 s", lambda v: v <= 3, worst=5),
    Target("W3", "Corral", "throughput", "≥ 70 % of its sandbox alone", lambda r: r >= 0.70,
           versus=SANDBOX_FLOOR),
    Target("W3", HOST, "throughput", "≥ Hail LocalBackend", lambda r: r >= 1.0, versus=HAIL),
    Target("W3", HOST, "throughput", "≥ 40 % of raw", lambda r: r >= 0.40, on_ratio=True),
    Target("W4", HOST, "DAG 1→100→1", "≤ Hail LocalBackend's time", lambda r: r <= 1.0, versus=HAIL),
    Target("W5", "Corral", "latency p50", "≤ 100 ms", lambda v: v <= 100),
    Target("W6", "Corral (SQLite)", "server RSS", "≤ 2 GiB", lambda v: v <= 2048),
    Target("W7", "Corral", "decision pass", "≤ 100 ms", lambda v: v <= 100),
    Target("W9", "Corral SLURM pool (process)", "throughput", "≥ 3x sbatch each", lambda r: r >= 3,
           on_ratio=True),
    Target("W9", "Corral SLURM pool (host runtime)", "throughput", "≥ 3x sbatch each", lambda r: r >= 3,
           on_ratio=True),
]
W9_REF = "SLURM (sbatch each)"  # W9 compares every row with plain sbatch on the same cluster


def reference(result: Result, results: list[Result]) -> Result | None:
    """The row a result is compared with: raw spawning for W3, the Corral row of the same metric otherwise."""
    want = {"W3": RAW, "W9": W9_REF}.get(result.workload, "Corral")
    if result.workload == "W1B":  # the ledger's overhead: on against off on the same store
        want = result.system.replace("ledger on", "ledger off")
    if result.system == want or result.workload in ("W1", "W2", "W6", "W7") or (
        result.workload == "W11" and "CPU" not in result.metric
    ):
        return None
    for other in results:
        if (other.workload, other.metric, other.system) == (result.workload, result.metric, want):
            return other
    return None


def ratio(result: Result, results: list[Result]) -> tuple[float | None, str]:
    ref = reference(result, results)
    if ref is None or ref.value in (None, 0) or result.value is None:
        return None, ""
    return result.value / ref.value, f"x {ref.system.split(' ')[0]}"


def _versus(result: Result, results: list[Result], system: str) -> float | None:
    for other in results:
        same = (other.workload, other.metric, other.system) == (result.workload, result.metric, system)
        if same and other.value and result.value is not None:
            return result.value / other.value
    return None


def judge(result: Result, results: list[Result], scaled: bool) -> str:
    verdicts = []
    for t in TARGETS:
        if (t.workload, t.system, t.metric) != (result.workload, result.system, result.metric):
            continue
        if t.versus is not None:
            value = _versus(result, results, t.versus)
        else:
            value = ratio(result, results)[0] if t.on_ratio else result.value
        if value is None:
            verdicts.append(f"{t.text}: not measured")
        elif scaled and result.workload == "W6":
            verdicts.append(f"{t.text}: scaled run, not judged")
        else:
            met = t.met(value) and (t.worst is None or max(result.samples, default=0.0) <= t.worst)
            shown = f" ({value:.2f}x)" if t.versus is not None else ""
            verdicts.append(f"{t.text}{shown}: **{'met' if met else 'MISSED'}**")
    return "; ".join(verdicts)


def fmt(value: float | None) -> str:
    if value is None:
        return "—"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}"


def table(results: list[Result], *, scaled_w6: bool) -> str:
    lines = ["| workload | system | metric | median | spread (min-max) | n | ratio | target | note |",
             "|---|---|---|--:|--:|--:|--:|---|---|"]
    for r in results:
        spread = r.spread
        rv, label = ratio(r, results)
        cells = [
            r.workload, r.system, r.metric, f"{fmt(r.value)} {r.unit}" if r.value is not None else "—",
            f"{fmt(spread[0])}-{fmt(spread[1])}" if spread else "—", str(len(r.samples)),
            f"{rv:.2f}{label}" if rv is not None else "", judge(r, results, scaled_w6),
            (f"ERROR: {r.error}" if r.error else r.note).replace("|", "/").replace("\n", " "),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def judged(results: list[Result], word: str, *, scaled_w6: bool) -> list[str]:
    """Rows whose target cell says `word` ("MISSED", "not measured", ...)."""
    return [f"{r.workload} {r.system} {r.metric}" for r in results if word in judge(r, results, scaled_w6)]


