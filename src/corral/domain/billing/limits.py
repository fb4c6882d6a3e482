"""Spend limits: when a project is over, and how far over it can get before the driver notices."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from corral.domain.billing.pricing import QUANTITY_PER_UNIT, PricedResource


def is_over_limit(spend: Decimal, limit: float | None) -> bool:
    """Reaching the limit counts as over (Hail: accrued_cost >= limit)."""
    return limit is not None and spend >= Decimal(repr(limit))


def limit_message(project: str, limit: float, spend: Decimal, currency: str) -> str:
    return (
        f"billing_project: billing project {project!r} has reached its spend limit "
        f"({float(spend):.6g} {currency} spent of a {limit:.6g} {currency} limit); an admin can raise or "
        "remove the limit"
    )


def burn_rate_per_hour(resources: Iterable[PricedResource]) -> float:
    """What an attempt costs per hour while it runs."""
    return sum(r.rate * r.quantity / QUANTITY_PER_UNIT[r.kind] for r in resources)


def overshoot_bound(burn_per_hour: float, accrual_interval: float, tick_seconds: float = 1.0) -> float:
    """How far past its limit a project's spend can get: its running attempts are charged at least every
    accrual_interval (plus one writer tick, at most `tick_seconds`), and the tick that sees the spend
    reach the limit cancels them, ending their charges at that moment. So the overshoot is at most the
    project's burn rate times (accrual_interval + tick_seconds)."""
    return burn_per_hour * (accrual_interval + tick_seconds) / 3600
