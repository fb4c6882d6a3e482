"""SLO and reference verdicts of a session's cells, and the comparison of two sessions (pure)."""

from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from corral.sessions.recipe import Recipe
from corral.sessions.results import CellStat, lower_is_better, t95

Stats = dict[tuple[str, str], dict[str, CellStat]]  # (cell, client) -> metric -> stat


def stats_from_rows(rows: list[dict[str, Any]]) -> tuple[Stats, dict[str, dict[str, Any]]]:
    """Stored result rows -> per (cell, client) metric stats over repetitions, and each cell's params."""
    stats: Stats = defaultdict(dict)
    params: dict[str, dict[str, Any]] = {}
    reps: dict[tuple[str, str], set[int]] = defaultdict(set)
    for row in rows:
        key = (row["cell"], row["client"])
        params[row["cell"]] = row.get("params") or {}
        reps[key].add(int(row["repetition"]))
        stat = stats[key].setdefault(row["metric"], CellStat(row["metric"], row["unit"], [], 0))
        if row["value"] is not None:
            stat.values.append(float(row["value"]))
    for key, metrics in stats.items():
        for stat in metrics.values():
            stat.n_repetitions = len(reps[key])
    return stats, params


def failed(metrics: dict[str, CellStat]) -> bool:
    f = metrics.get("failed")
    t = metrics.get("throughput")
    return bool(f and f.values) or t is None or not t.values


@dataclass
class Verdict:
    cell: str
    client: str
    kind: str  # slo | reference
    metric: str
    expected: str
    actual: float | None
    passed: bool
    note: str = ""


def slo_verdicts(recipe: Recipe, stats: Stats) -> list[Verdict]:
    out: list[Verdict] = []
    for (cell, client), metrics in sorted(stats.items()):
        for slo in recipe.slo:
            stat = metrics.get(slo.metric)
            mean = stat.mean if stat is not None else None
            bound = " and ".join(
                b
                for b in (
                    f"<= {slo.max:g}" if slo.max is not None else "",
                    f">= {slo.min:g}" if slo.min is not None else "",
                )
                if b
            )
            if failed(metrics) or mean is None:
                out.append(
                    Verdict(cell, client, "slo", slo.metric, bound, None, False, "no samples: failed cell")
                )
                continue
            ok = (slo.max is None or mean <= slo.max) and (slo.min is None or mean >= slo.min)
            out.append(Verdict(cell, client, "slo", slo.metric, bound, mean, ok))
    return out


def reference_verdicts(
    recipe: Recipe,
    stats: Stats,
    params: dict[str, dict[str, Any]],
    baseline: tuple[Stats, dict[str, dict[str, Any]]] | None = None,
) -> list[Verdict]:
    out: list[Verdict] = []
    for ref in recipe.references:
        for (cell, client), metrics in sorted(stats.items()):
            cell_params = params.get(cell, {})
            if any(cell_params.get(k) != v for k, v in ref.where.items()):
                continue
            stat = metrics.get(ref.metric)
            mean = stat.mean if stat is not None else None
            target = ref.value
            note = ""
            if ref.baseline is not None:
                target = None
                if baseline is not None:
                    other = _match(baseline, cell_params, client)
                    if other is not None and ref.metric in other and other[ref.metric].mean is not None:
                        target = other[ref.metric].mean
                note = f"baseline {ref.baseline}"
            if mean is None or target is None:
                out.append(
                    Verdict(
                        cell,
                        client,
                        "reference",
                        ref.metric,
                        "no reference value" if target is None else f"{target:g} ± {ref.tolerance:.0%}",
                        mean,
                        False,
                        note or "no samples: failed cell",
                    )
                )
                continue
            delta = (mean - target) / target if target else math.inf
            worse = delta > ref.tolerance if lower_is_better(ref.metric) else delta < -ref.tolerance
            out.append(
                Verdict(
                    cell,
                    client,
                    "reference",
                    ref.metric,
                    f"{target:g} ± {ref.tolerance:.0%}",
                    mean,
                    not worse,
                    (note + f" Δ {delta:+.1%}").strip(),
                )
            )
    return out


def _match(
    other: tuple[Stats, dict[str, dict[str, Any]]], cell_params: dict[str, Any], client: str
) -> dict[str, CellStat] | None:
    stats, params = other
    wanted = json.dumps(cell_params, sort_keys=True)
    for (cell, c), metrics in stats.items():
        if c == client and json.dumps(params.get(cell, {}), sort_keys=True) == wanted:
            return metrics
    return None


@dataclass
class Comparison:
    cell: str
    params: dict[str, Any]
    client: str
    metric: str
    unit: str
    a: float | None
    a_ci: float | None
    b: float | None
    b_ci: float | None
    delta: float | None  # (b - a) / a
    significant: bool | None  # None: too few repetitions to say
    regression: bool

    def to_wire(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _significant(a: CellStat, b: CellStat) -> bool | None:
    """Welch's t-test at 95% (two-sided) on the repetitions' values; None with fewer than 2 each."""
    if len(a.values) < 2 or len(b.values) < 2:
        return None
    ma, mb = a.mean or 0.0, b.mean or 0.0
    va = sum((v - ma) ** 2 for v in a.values) / (len(a.values) - 1)
    vb = sum((v - mb) ** 2 for v in b.values) / (len(b.values) - 1)
    se = math.sqrt(va / len(a.values) + vb / len(b.values))
    if se == 0:
        return ma != mb
    df_num = (va / len(a.values) + vb / len(b.values)) ** 2
    df_den = (va / len(a.values)) ** 2 / (len(a.values) - 1) + (vb / len(b.values)) ** 2 / (
        len(b.values) - 1
    )
    df = max(1, int(df_num / df_den)) if df_den else 1
    return abs(mb - ma) / se > t95(df)


def compare(
    a: tuple[Stats, dict[str, dict[str, Any]]],
    b: tuple[Stats, dict[str, dict[str, Any]]],
    *,
    tolerance: float,
    metrics: list[str] | None = None,
) -> list[Comparison]:
    """Per matching cell (same parameters and client) and metric: Δ%, CIs, significance; a regression
    is a change for the worse beyond `tolerance` that is significant (or cannot be tested: one
    repetition), or a cell that measured in A and failed in B."""
    out: list[Comparison] = []
    stats_a, params_a = a
    wanted = metrics or [
        "throughput",
        "p50_ms",
        "p90_ms",
        "p99_ms",
        "mean_ms",
        "error_rate",
        "ttft_p50_ms",
        "tokens_per_s",
    ]
    for (cell, client), ma in sorted(stats_a.items()):
        mb = _match(b, params_a.get(cell, {}), client)
        for metric in wanted:
            sa = ma.get(metric)
            if sa is None:
                continue
            sb = mb.get(metric) if mb is not None else None
            mean_a = sa.mean
            mean_b = sb.mean if sb is not None else None
            if mean_a is None:
                continue
            if mean_b is None:  # measured in A, failed (or missing) in B: a regression
                delta, significant, regression = None, None, True
            else:
                delta = (mean_b - mean_a) / mean_a if mean_a else (0.0 if mean_b == mean_a else math.inf)
                significant = _significant(sa, sb) if sb is not None else None
                worse = delta > tolerance if lower_is_better(metric) else delta < -tolerance
                regression = worse and significant is not False
            out.append(Comparison(
                cell, params_a.get(cell, {}), client, metric, sa.unit, mean_a, sa.ci95, mean_b,
                sb.ci95 if sb is not None and mean_b is not None else None, delta, significant, regression,
            ))
    return out
