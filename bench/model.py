"""What a benchmark produces: one row per (workload, system, metric), with its median and spread."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any


class BenchError(Exception):
    """A workload or peer could not run; the message says why (it becomes the row's note)."""


@dataclass
class Result:
    workload: str
    system: str
    metric: str
    value: float | None  # the median of the samples; None when the system could not run
    unit: str
    samples: list[float] = field(default_factory=list)
    note: str = ""
    error: str = ""
    higher_is_better: bool = False

    @property
    def spread(self) -> tuple[float, float] | None:
        return (min(self.samples), max(self.samples)) if self.samples else None

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        spread = self.spread
        out["min"], out["max"] = spread if spread else (None, None)
        out["repeats"] = len(self.samples)
        return out


def measured(
    workload: str, system: str, metric: str, samples: Sequence[float], unit: str, *,
    note: str = "", higher_is_better: bool = False,
) -> Result:
    return Result(
        workload, system, metric, statistics.median(samples), unit, list(samples), note,
        higher_is_better=higher_is_better,
    )


def failed(workload: str, system: str, metric: str, unit: str, error: str) -> Result:
    return Result(workload, system, metric, None, unit, error=error)


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100) of the values."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), math.ceil(p / 100 * len(ordered))))
    return ordered[rank - 1]
