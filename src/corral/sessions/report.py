"""A session's report: a self-contained HTML page (plots embedded), the PNGs, results.json, a manifest.

Plots: latency against throughput over the cells, percentile curves, and per-second time series
(warm-up shaded). Tables: per cell n, failures, throughput, p50/p90/p99 as mean ± 95% CI over repetitions.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from jinja2 import Environment, select_autoescape

from corral import __version__
from corral.sessions.measure import METRIC_DEFINITIONS, percentile
from corral.sessions.results import RunResult
from corral.sessions.verdicts import Stats, Verdict, failed

TABLE_METRICS = [
    "n",
    "failures",
    "throughput",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "ttft_p50_ms",
    "itl_mean_ms",
    "tokens_per_s",
    "goodput",
]

PAGE = (Path(__file__).parent / "templates" / "report.html.j2").read_text  # read when a report is written


def host_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), cpu)
    except OSError:
        pass
    gpus = ""
    if shutil.which("nvidia-smi"):
        try:
            gpus = (
                subprocess.run(
                    ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
                    capture_output=True,
                    text=True,
                    timeout=10,
                )
                .stdout.strip()
                .replace("\n", ", ")
            )
        except (OSError, subprocess.SubprocessError):
            gpus = ""
    return {
        "node": platform.node(),
        "kernel": platform.release(),
        "system": platform.system(),
        "python": platform.python_version(),
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "gpus": gpus,
    }


def _fmt(value: float | None) -> str:
    return "—" if value is None else f"{value:.4g}"


class _Figures:
    """Each plot of a report: one matplotlib figure saved as a PNG, with its axes labelled the same way."""

    def __init__(self, plots_dir: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        self.plt = plt
        self.dir = plots_dir
        self.made: list[tuple[str, Path]] = []

    @contextmanager
    def figure(self, name: str, filename: str, *, xlabel: str, ylabel: str, title: str,
               legend_size: int) -> Iterator[Any]:
        """The axes to draw on; labelled, saved and closed when the block ends."""
        fig, ax = self.plt.subplots(figsize=(7, 4))
        yield ax
        ax.set_xlabel(xlabel)
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=legend_size)
        fig.tight_layout()
        self.made.append((name, self.dir / filename))
        fig.savefig(self.made[-1][1], dpi=90)
        self.plt.close(fig)


def _plots(out: Path, stats: Stats, runs: list[RunResult]) -> list[tuple[str, str]]:
    plots_dir = out / "plots"
    plots_dir.mkdir(parents=True, exist_ok=True)
    figures = _Figures(plots_dir)

    with figures.figure(
        "Latency vs throughput", "latency_vs_throughput.png", xlabel="throughput (req/s)",
        ylabel="latency (ms)", title="latency vs throughput (each point a cell, mean over repetitions)",
        legend_size=8,
    ) as ax:
        by_client: dict[str, list[tuple[float, float, float]]] = {}
        for (_cell, client), metrics in sorted(stats.items()):
            t, p50, p99 = (metrics.get(k) for k in ("throughput", "p50_ms", "p99_ms"))
            if t and t.mean is not None and p50 and p50.mean is not None:
                by_client.setdefault(client, []).append(
                    (t.mean, p50.mean, p99.mean if p99 and p99.mean else p50.mean)
                )
        for client, points in by_client.items():
            points.sort()
            ax.plot([p[0] for p in points], [p[1] for p in points], "o-", label=f"{client} p50")
            ax.plot([p[0] for p in points], [p[2] for p in points], "s--", label=f"{client} p99")

    with figures.figure(
        "Percentile curves", "percentiles.png", xlabel="percentile", ylabel="latency (ms)",
        title="latency percentiles (all repetitions' successful requests)", legend_size=7,
    ) as ax:
        quantiles = [q / 10 for q in range(0, 1000, 5)] + [99.9]
        any_curve = False
        for key in sorted({(r.cell, r.client) for r in runs}):
            lat = [s[1] for r in runs if (r.cell, r.client) == key for s in r.samples if s[2]]
            if len(lat) >= 2:
                ax.plot(quantiles, [percentile(lat, q) or 0.0 for q in quantiles], label=f"{key[0]} {key[1]}")
                any_curve = True
        if not any_curve:  # tools that print summaries only: their own percentiles
            for (cell, client), metrics in sorted(stats.items()):
                xs = [
                    q
                    for q, k in ((50, "p50_ms"), (90, "p90_ms"), (95, "p95_ms"), (99, "p99_ms"))
                    if metrics.get(k) and metrics[k].mean is not None
                ]
                ys = [metrics[f"p{q}_ms"].mean or 0.0 for q in xs]
                if xs:
                    ax.plot(xs, ys, "o-", label=f"{cell} {client}")

    with figures.figure(
        "Time series", "timeseries.png", xlabel="seconds since the client started (warm-up shaded)",
        ylabel="requests completed per second", title="per-second time series (repetition 1)", legend_size=7,
    ) as ax:
        for run in runs:
            if run.repetition != 1 or run.replica != 1 or not run.timeseries:
                continue
            t0 = run.timeseries[0]["t"]
            times = [p["t"] - t0 for p in run.timeseries]
            ax.plot(times, [p["completed"] for p in run.timeseries], label=f"{run.cell} {run.client}")
            warm = [x for x, p in zip(times, run.timeseries, strict=True) if not p["measured"]]
            if warm:
                ax.axvspan(min(warm), max(warm) + 1, color="orange", alpha=0.15)
    return [(name, base64.b64encode(path.read_bytes()).decode()) for name, path in figures.made]


def write_report(
    out: Path,
    manifest: dict[str, Any],
    stats: Stats,
    params: dict[str, dict[str, Any]],
    runs: list[RunResult],
    services: list[dict[str, Any]],
    verdicts: list[Verdict],
) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    cells = []
    for (cell, client), metrics in sorted(stats.items()):
        shown = [m for m in TABLE_METRICS if m in metrics] + sorted(
            set(metrics) - set(TABLE_METRICS) - {"failed"}
        )
        members = [r for r in runs if (r.cell, r.client) == (cell, client)]
        cells.append(
            {
                "cell": cell,
                "client": client,
                "params": json.dumps(params.get(cell, {}), sort_keys=True),
                "failed": failed(metrics),
                "errors": sorted({r.error for r in members if r.error}),
                "warmup": "; ".join(
                    f"r{r.repetition}.{r.replica}: {r.warmup}" for r in members if r.warmup
                ),
                "stats": [
                    {
                        "metric": m,
                        "mean": _fmt(metrics[m].mean),
                        "ci": _fmt(metrics[m].ci95),
                        "reps": f"{len(metrics[m].values)}/{metrics[m].n_repetitions}",
                        "unit": metrics[m].unit,
                        "definition": METRIC_DEFINITIONS.get(m, ""),
                    }
                    for m in shown
                ],
            }
        )
    results = {
        f"{cell}/{client}": {
            "params": params.get(cell, {}),
            "failed": failed(metrics),
            "metrics": {
                m: {"mean": s.mean, "ci95": s.ci95, "values": s.values, "unit": s.unit}
                for m, s in metrics.items()
            },
        }
        for (cell, client), metrics in sorted(stats.items())
    }
    (out / "results.json").write_text(
        json.dumps({"cells": results, "verdicts": [v.__dict__ for v in verdicts]}, indent=1, default=str)
    )
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1, default=str))
    plots = _plots(out, stats, runs)
    html = (
        Environment(autoescape=select_autoescape(default=True))
        .from_string(PAGE())
        .render(
            m=manifest,
            cells=cells,
            verdicts=verdicts,
            services=services,
            plots=plots,
            definitions=sorted(METRIC_DEFINITIONS.items()),
            manifest_json=json.dumps(manifest, indent=1, default=str),
        )
    )
    page = out / "report.html"
    page.write_text(html)
    return page


def manifest_of(
    session: dict[str, Any],
    recipe_hash: str,
    seed: int,
    repetitions: int,
    runs: list[RunResult],
    images: list[str],
    batch: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        "session": {
            k: session.get(k) for k in ("id", "name", "state", "batch_id", "time_created", "time_completed")
        },
        "recipe_hash": recipe_hash,
        "corral_version": __version__,
        "seed": seed,
        "repetitions": repetitions,
        "seeds": sorted({r.seed for r in runs if r.seed is not None}),
        "images": images,
        "host": host_info(),
        "client_hosts": sorted({r.host for r in runs if r.host}),
        "batch": {k: (batch or {}).get(k) for k in ("state", "time_created", "time_completed", "duration")},
    }
