"""Versioned rates: a resource's rate never changes in place; a new rate is a new version, and an
attempt keeps the version in force when it started."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal

from corral.domain.billing.ledger import rate_decimal, versioned


@dataclass(frozen=True, slots=True)
class RateVersion:
    resource: str
    version: int
    rate: float  # currency per unit-hour
    time_effective: float

    @property
    def name(self) -> str:
        return versioned(self.resource, self.version)


@dataclass
class RateBook:
    latest: dict[str, RateVersion] = field(default_factory=dict)
    by_name: dict[str, Decimal] = field(default_factory=dict)  # versioned name -> rate
    history: dict[str, list[RateVersion]] = field(default_factory=dict)  # resource -> its versions

    def add(self, v: RateVersion) -> None:
        self.by_name[v.name] = rate_decimal(v.rate)
        self.history.setdefault(v.resource, []).append(v)
        if v.resource not in self.latest or self.latest[v.resource].version < v.version:
            self.latest[v.resource] = v

    def in_force_at(self, resource: str, when: float) -> RateVersion | None:
        """The version in force at `when`: the newest that took effect by then (None: none had)."""
        earlier = [v for v in self.history.get(resource, ()) if v.time_effective <= when]
        return max(earlier, key=lambda v: v.version) if earlier else None

    def version_for(self, resource: str, rate: float, now: float) -> tuple[RateVersion, bool]:
        """The version carrying `rate` now: the latest if its rate is the same, else a new one (True)."""
        current = self.latest.get(resource)
        # Equal floats have equal decimals (the cheap test first; unequal ones are compared as decimals).
        if current is not None and (current.rate == rate or rate_decimal(current.rate) == rate_decimal(rate)):
            return current, False
        new = RateVersion(resource, (current.version + 1) if current else 1, rate, now)
        self.add(new)
        return new, True
