"""Spend reports: usage rows of the daily roll-up grouped by project, user or day, with their cost."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

from corral.domain.billing.ledger import CostLine, breakdown, total

ReportBy = Literal["project", "user", "day"]


@dataclass(frozen=True, slots=True)
class UsageEntry:
    billing_project: str
    user: str
    day: str
    resource: str  # versioned
    usage: int


@dataclass(frozen=True, slots=True)
class ReportLine:
    key: str
    cost: Decimal
    lines: list[CostLine]


def _key(entry: UsageEntry, by: ReportBy) -> str:
    return {"project": entry.billing_project, "user": entry.user, "day": entry.day}[by]


def report(entries: Iterable[UsageEntry], by: ReportBy, rates: Mapping[str, Decimal]) -> list[ReportLine]:
    """One line per project, user or day (sorted by key), each with its cost breakdown by resource."""
    grouped: dict[str, list[tuple[str, int]]] = defaultdict(list)
    for entry in entries:
        grouped[_key(entry, by)].append((entry.resource, entry.usage))
    out = []
    for key in sorted(grouped):
        lines = breakdown(grouped[key], rates)
        out.append(ReportLine(key, total(lines), lines))
    return out
