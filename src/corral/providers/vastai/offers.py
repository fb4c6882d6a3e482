"""Choosing vast.ai offers, pure: the search query, the bad-host list, the price, the ranking.

Ranking: cheapest per unit of performance (dlperf, vast's deep-learning benchmark) first, machines that
already run fewer of our instances first (spreading), never a machine on the bad-host list, never one
that would take the collection over its budget.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from corral.providers.base import MachineShape
from corral.providers.vastai.options import VastOptions

Offer = Mapping[str, Any]


def search_query(options: VastOptions, shape: MachineShape) -> dict[str, Any]:
    """The body of POST /bundles/ for offers that can hold one instance of `shape`."""
    f = options.filters
    q: dict[str, Any] = {
        "rentable": {"eq": True},
        "rented": {"eq": False},
        "external": {"eq": False},
        "cpu_cores_effective": {"gte": shape.cores},
        "cpu_ram": {"gte": shape.memory_bytes / 1e6},  # MB
        "disk_space": {"gte": f.disk_gb or options.disk_gb},
        "order": [["dlperf_per_dphtotal", "desc"]],
        "type": "bid" if options.interruptible else "on-demand",
        "limit": options.search_limit,
        "allocated_storage": options.disk_gb,
    }
    gpus = f.num_gpus or shape.gpus
    if gpus:
        q["num_gpus"] = {"eq": gpus}
    names = f.gpu_name or ([shape.gpu_type] if shape.gpu_type else None)
    if names:
        q["gpu_name"] = {"in": names}
    if f.gpu_ram_gb is not None:
        q["gpu_ram"] = {"gte": f.gpu_ram_gb * 1000}
    if f.cuda_version is not None:
        q["cuda_max_good"] = {"gte": f.cuda_version}
    if f.reliability is not None:
        q["reliability2"] = {"gte": f.reliability}
    if f.inet_down_mbps is not None:
        q["inet_down"] = {"gte": f.inet_down_mbps}
    if f.verified is not None:
        q["verified"] = {"eq": f.verified}
    if f.geolocation:
        q["geolocation"] = {"in": f.geolocation}
    if f.direct_port_count is not None:
        q["direct_port_count"] = {"gte": f.direct_port_count}
    if options.max_price_per_hour is not None:
        q["dph_total"] = {"lte": options.max_price_per_hour}
    q.update(f.extra)
    return q


def offer_price(offer: Offer, options: VastOptions) -> float:
    """What the instance would cost per hour: dph_total on demand, our bid when interruptible."""
    if options.interruptible:
        return round(float(offer.get("min_bid") or offer["dph_total"]) * (1 + options.bid_margin), 6)
    return float(offer["dph_total"])


def cost_per_performance(offer: Offer, options: VastOptions) -> float:
    perf = float(offer.get("dlperf") or 0.0)
    price = offer_price(offer, options)
    return price / perf if perf > 0 else price * 1e6  # unknown performance ranks last


@dataclass
class BadHosts:
    """Machines that failed us, each with why and until when; entries expire."""

    entries: dict[int, tuple[float, str]] = field(default_factory=dict)  # machine id -> (until, reason)

    def add(self, machine_id: int, reason: str, now: float, seconds: float) -> None:
        self.entries[machine_id] = (now + seconds, reason)

    def blocked(self, machine_id: int, now: float) -> bool:
        entry = self.entries.get(machine_id)
        if entry is None:
            return False
        if entry[0] <= now:
            del self.entries[machine_id]
            return False
        return True

    def active(self, now: float) -> dict[int, str]:
        return {m: reason for m, (until, reason) in list(self.entries.items()) if until > now}


def rank_offers(
    offers: Iterable[Offer],
    options: VastOptions,
    *,
    bad: BadHosts,
    now: float,
    ours_per_machine: Mapping[int, int],
    budget_left: float | None,
    skip: set[int] | None = None,
) -> list[Offer]:
    """Offers to try, best first."""
    usable = []
    for offer in offers:
        machine = int(offer["machine_id"])
        if bad.blocked(machine, now) or (skip and int(offer["id"]) in skip):
            continue
        price = offer_price(offer, options)
        if options.max_price_per_hour is not None and price > options.max_price_per_hour:
            continue
        if budget_left is not None and price > budget_left + 1e-9:
            continue
        usable.append(offer)
    usable.sort(
        key=lambda o: (
            ours_per_machine.get(int(o["machine_id"]), 0),
            cost_per_performance(o, options),
            int(o["id"]),
        )
    )
    return usable
