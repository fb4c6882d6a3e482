"""A session's results: read from its client jobs' logs (so they can be rebuilt at any time from the
batch), replicas combined, repetitions aggregated (mean ± 95% confidence interval), written to Parquet.

A cell whose measured runs have no successful request is a failed cell: its latencies are None (never 0).
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from corral.client.sync import SyncClient
from corral.sessions.harness import RESULT_MARK
from corral.sessions.measure import percentile

# Two-sided 95% Student t quantiles by degrees of freedom (1..30); above, the normal 1.96.
_T95 = [
    12.706,
    4.303,
    3.182,
    2.776,
    2.571,
    2.447,
    2.365,
    2.306,
    2.262,
    2.228,
    2.201,
    2.179,
    2.160,
    2.145,
    2.131,
    2.120,
    2.110,
    2.101,
    2.093,
    2.086,
    2.080,
    2.074,
    2.069,
    2.064,
    2.060,
    2.056,
    2.052,
    2.048,
    2.045,
    2.042,
]
LOWER_IS_BETTER = ("_ms", "error_rate", "failures")


def t95(df: int) -> float:
    return _T95[df - 1] if 1 <= df <= len(_T95) else 1.96


def lower_is_better(metric: str) -> bool:
    return metric.endswith(LOWER_IS_BETTER)


@dataclass
class RunResult:
    """One client job's measured run (a replica of a client in a cell and repetition)."""

    cell: str
    repetition: int
    client: str
    replica: int
    job_id: int
    job_state: str
    metrics: dict[str, tuple[float | None, str]] = field(default_factory=dict)
    n: int = 0
    failures: int = 0
    warmup: dict[str, Any] = field(default_factory=dict)
    timeseries: list[dict[str, float]] = field(default_factory=list)
    samples: list[list[Any]] = field(default_factory=list)
    error: str | None = None
    seed: int | None = None
    host: str | None = None


@dataclass
class CellStat:
    metric: str
    unit: str
    values: list[float]  # one per repetition that measured it
    n_repetitions: int

    @property
    def mean(self) -> float | None:
        return sum(self.values) / len(self.values) if self.values else None

    @property
    def ci95(self) -> float | None:
        """Half-width of the 95% confidence interval of the mean over repetitions (None with one)."""
        k = len(self.values)
        if k < 2:
            return None
        mean = sum(self.values) / k
        sd = math.sqrt(sum((v - mean) ** 2 for v in self.values) / (k - 1))
        return t95(k - 1) * sd / math.sqrt(k)


def parse_result_line(log: str) -> dict[str, Any] | None:
    for line in reversed(log.splitlines()):
        if line.startswith(RESULT_MARK):
            try:
                parsed: dict[str, Any] = json.loads(line[len(RESULT_MARK) :])
                return parsed
            except ValueError:
                return None
    return None


def collect(client: SyncClient, batch_id: int) -> tuple[list[RunResult], list[dict[str, Any]]]:
    """Every client job's run, and the service jobs (state, endpoint, readiness) of a session's batch."""
    runs: list[RunResult] = []
    services: list[dict[str, Any]] = []
    for summary in client.iter_jobs(batch_id):
        job = client.get_job(batch_id, summary.job_id)
        attrs = job.attributes
        if attrs.get("bench_role") == "service":
            service = (job.status or {}).get("service") or {}
            services.append(
                {
                    "job_id": job.job_id,
                    "name": job.name,
                    "state": job.state,
                    "cells": attrs.get("bench_cells", ""),
                    "repetition": attrs.get("bench_repetition"),
                    "ready_seconds": service.get("ready_seconds")
                    or (job.endpoint or {}).get("ready_seconds"),
                    "probes": service.get("probes") or (job.endpoint or {}).get("probes"),
                    "error": (job.status or {}).get("error"),
                    "exit_code": job.exit_code,
                }
            )
            continue
        if attrs.get("bench_role") != "client":
            continue
        run = RunResult(
            attrs["bench_cell"],
            int(attrs["bench_repetition"]),
            attrs["bench_client"],
            int(attrs["bench_replica"]),
            job.job_id,
            job.state,
        )
        result = None
        if job.state in ("Success", "Failed"):
            try:
                result = parse_result_line(client.job_step_log(batch_id, job.job_id, "main"))
            except Exception:  # no log: the job never ran its main step
                result = None
        if result is None:
            reason = (job.status or {}).get("error") or f"client job {job.job_id} ended {job.state}"
            run.error = str(reason)
        else:
            run.metrics = {k: (v["value"], v["unit"]) for k, v in result["metrics"].items()}
            run.n, run.failures = int(result.get("n") or 0), int(result.get("failures") or 0)
            run.warmup, run.timeseries = result.get("warmup") or {}, result.get("timeseries") or []
            run.samples, run.error = result.get("samples") or [], result.get("error")
            run.seed, run.host = result.get("seed"), result.get("host")
        runs.append(run)
    return runs, services


def combine_replicas(runs: list[RunResult]) -> dict[str, tuple[float | None, str]]:
    """Replicas of one client in one cell and repetition: throughputs add up; latency percentiles are
    recomputed from the merged samples when the replicas have them, else the replicas' worst value."""
    out: dict[str, tuple[float | None, str]] = {}
    n = sum(r.n for r in runs)
    failures = sum(r.failures for r in runs)
    out["n"], out["failures"] = (float(n), "count"), (float(failures), "count")
    out["error_rate"] = (failures / n if n else None, "ratio")
    names = {k for r in runs for k in r.metrics} - {"n", "failures", "error_rate"}
    merged = [s for r in runs for s in r.samples if s[2]]
    for name in sorted(names):
        values = [r.metrics[name][0] for r in runs if name in r.metrics]
        unit = next(r.metrics[name][1] for r in runs if name in r.metrics)
        present = [v for v in values if v is not None]
        if len(present) < len(runs) or not present:
            out[name] = (None, unit)  # a replica measured nothing: the cell has no such number
        elif name in ("throughput", "tokens_per_s", "goodput") or name.endswith("_throughput"):
            out[name] = (sum(present), unit)
        elif merged and name in ("p50_ms", "p90_ms", "p99_ms") and len(runs) > 1:
            out[name] = (percentile([s[1] for s in merged], float(name[1:3])), unit)
        elif name.endswith("_ms") and len(runs) > 1:
            out[name] = (max(present), unit)
        else:
            out[name] = (sum(present) / len(present), unit)
    if not n or out.get("throughput", (None, ""))[0] is None:
        out["failed"] = (1.0, "bool")
    return out


def aggregate(runs: list[RunResult], n_repetitions: int) -> dict[tuple[str, str], dict[str, CellStat]]:
    """(cell, client) -> metric -> values over repetitions."""
    groups: dict[tuple[str, str, int], list[RunResult]] = defaultdict(list)
    for run in runs:
        groups[(run.cell, run.client, run.repetition)].append(run)
    table: dict[tuple[str, str], dict[str, CellStat]] = defaultdict(dict)
    for (cell, client, _rep), members in sorted(groups.items()):
        for metric, (value, unit) in combine_replicas(members).items():
            stat = table[(cell, client)].setdefault(metric, CellStat(metric, unit, [], n_repetitions))
            if value is not None:
                stat.values.append(float(value))
    return table


def cell_failed(stats: dict[str, CellStat]) -> bool:
    """Zero successful samples in any repetition, or no throughput at all: the cell failed."""
    failed = stats.get("failed")
    throughput = stats.get("throughput")
    return bool(failed and failed.values) or throughput is None or not throughput.values


def rows(session_id: int, cells: dict[str, dict[str, Any]], runs: list[RunResult]) -> list[dict[str, Any]]:
    """Long rows for the store and Parquet: one per (cell, repetition, client, metric), replicas combined."""
    groups: dict[tuple[str, str, int], list[RunResult]] = defaultdict(list)
    for run in runs:
        groups[(run.cell, run.client, run.repetition)].append(run)
    out = []
    for (cell, client, rep), members in sorted(groups.items()):
        for metric, (value, unit) in combine_replicas(members).items():
            out.append(
                {
                    "session_id": session_id,
                    "cell": cell,
                    "repetition": rep,
                    "client": client,
                    "metric": metric,
                    "value": value,
                    "unit": unit,
                    "params": cells.get(cell, {}),
                }
            )
    return out


def write_parquet(path: Path, result_rows: list[dict[str, Any]], runs: list[RunResult]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "session_id": [r["session_id"] for r in result_rows],
            "cell": [r["cell"] for r in result_rows],
            "repetition": [r["repetition"] for r in result_rows],
            "client": [r["client"] for r in result_rows],
            "metric": [r["metric"] for r in result_rows],
            "value": pa.array([r["value"] for r in result_rows], type=pa.float64()),
            "unit": [r["unit"] for r in result_rows],
            "params": [json.dumps(r["params"], sort_keys=True) for r in result_rows],
        }
    )
    pq.write_table(table, path)
    samples = [
        (r.cell, r.repetition, r.client, r.replica, s[0], s[1], bool(s[2])) for r in runs for s in r.samples
    ]
    if samples:
        columns = list(zip(*samples, strict=True))
        pq.write_table(
            pa.table(
                {
                    "cell": list(columns[0]),
                    "repetition": list(columns[1]),
                    "client": list(columns[2]),
                    "replica": list(columns[3]),
                    "start_s": list(columns[4]),
                    "latency_ms": list(columns[5]),
                    "ok": list(columns[6]),
                }
            ),
            path.with_name(path.stem + "-samples.parquet"),
        )
