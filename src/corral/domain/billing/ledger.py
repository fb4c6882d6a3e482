"""Usage and cost arithmetic of the ledger, exact: usage is an integer (quantity x milliseconds), rates
are decimals, so an attempt charged in many slices (live accrual, a crash in between) costs exactly
what it costs charged once."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal

from corral.domain.billing.pricing import QUANTITY_PER_UNIT, kind_of

MS_PER_HOUR = 3_600_000
MS_PER_DAY = 86_400_000
Usage = dict[tuple[str, str], int]  # (day, versioned resource) -> usage


def to_ms(t: float) -> int:
    return round(t * 1000)


def versioned(resource: str, version: int) -> str:
    return f"{resource}/{version}"


def unversioned(name: str) -> str:
    return name.rsplit("/", 1)[0]


def day_of(ms: int) -> str:
    return datetime.fromtimestamp(ms // MS_PER_DAY * 86_400, tz=UTC).date().isoformat()


def day_segments(start_ms: int, end_ms: int) -> list[tuple[str, int]]:
    """[start, end) cut at UTC midnights: (day, milliseconds); negative when end < start (a correction)."""
    if end_ms == start_ms:
        return []
    sign, lo, hi = (1, start_ms, end_ms) if end_ms > start_ms else (-1, end_ms, start_ms)
    out: list[tuple[str, int]] = []
    while lo < hi:
        boundary = min(hi, (lo // MS_PER_DAY + 1) * MS_PER_DAY)
        out.append((day_of(lo), sign * (boundary - lo)))
        lo = boundary
    return out


def slice_usage(resources: Sequence[tuple[str, int]], start_ms: int, end_ms: int) -> Usage:
    """The usage of charging [start, end) for resources [(versioned name, quantity)], by day."""
    usage: Usage = defaultdict(int)
    for day, ms in day_segments(start_ms, end_ms):
        for name, quantity in resources:
            usage[(day, name)] += quantity * ms
    return dict(usage)


def cost_of(name: str, usage: int, rate: Decimal) -> Decimal:
    """Cost of `usage` (quantity x ms) of the versioned resource `name` at `rate` per unit-hour."""
    return Decimal(usage) * rate / (QUANTITY_PER_UNIT[kind_of(name)] * MS_PER_HOUR)


def rate_decimal(rate: float) -> Decimal:
    """The rate as written in the config (0.04 stays 0.04, not its binary neighbour)."""
    return Decimal(repr(rate))


@dataclass(frozen=True, slots=True)
class CostLine:
    resource: str  # versioned
    usage: int
    cost: Decimal


def breakdown(usage: Iterable[tuple[str, int]], rates: Mapping[str, Decimal]) -> list[CostLine]:
    """Cost per versioned resource, sorted by name (Hail's cost_breakdown); unknown rates cost 0."""
    totals: dict[str, int] = defaultdict(int)
    for name, amount in usage:
        totals[name] += amount
    return [CostLine(name, totals[name], cost_of(name, totals[name], rates.get(name, Decimal(0))))
            for name in sorted(totals)]


def total(lines: Iterable[CostLine]) -> Decimal:
    return sum((line.cost for line in lines), Decimal(0))


def as_money(value: Decimal) -> float:
    return float(value)
