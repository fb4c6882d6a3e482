"""Max-min water-filling of cores across users (Hail's fair share), in milli-cores."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class UserDemand:
    running_mcpu: int  # cores already held by the user's running jobs
    ready_mcpu: int  # cores the user's ready jobs would like


def fair_share_cores(demands: Mapping[str, UserDemand], free_mcpu: int) -> dict[str, int]:
    """How many of the free milli-cores each user may take now.

    The pool's capacity (free + running) is water-filled: every user's total is raised to a common
    level, capped by what it wants (running + ready). Running jobs are never pre-empted, so a user
    already above the level keeps what it has and gets nothing new.
    """
    if free_mcpu <= 0 or not demands:
        return {user: 0 for user in demands}
    floors = {u: d.running_mcpu for u, d in demands.items()}
    caps = {u: d.running_mcpu + d.ready_mcpu for u, d in demands.items()}
    capacity = free_mcpu + sum(floors.values())

    def allotted(level: float) -> float:
        return sum(min(max(level, floors[u]), caps[u]) for u in demands)

    if allotted(max(caps.values())) <= capacity:
        return {u: caps[u] - floors[u] for u in demands}
    low, high = 0.0, float(max(caps.values()))
    for _ in range(60):
        mid = (low + high) / 2
        if allotted(mid) <= capacity:
            low = mid
        else:
            high = mid
    shares = {u: int(min(max(low, floors[u]), caps[u])) - floors[u] for u in demands}
    # Hand out what integer rounding left, one milli-core at a time to users still below their cap.
    leftover = free_mcpu - sum(shares.values())
    for user in sorted(demands, key=lambda u: floors[u] + shares[u]):
        if leftover <= 0:
            break
        extra = min(leftover, caps[user] - floors[user] - shares[user])
        if extra > 0:
            shares[user] += extra
            leftover -= extra
    return shares
