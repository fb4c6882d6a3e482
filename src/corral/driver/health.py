"""What the autoscaler keeps from providers about each instance: health samples (and the drain they
cause), why a creation failed (a preparation report), the instance's own price, and adoption on restart.

Small functions the autoscaler calls, so the autoscaler itself changes by a few lines.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from corral.driver.driver import Driver
from corral.providers.base import InstanceProvider
from corral.store import instances as instance_store
from corral.store.instances import InstanceRecord

log = logging.getLogger("corral.autoscaler")


async def adopt_instances(providers: Mapping[str, InstanceProvider], live: Sequence[InstanceRecord]) -> None:
    """Providers that can adopt (`adopt(known)`: rented hosts) get the instances the store knows."""
    for collection, provider in providers.items():
        adopt = getattr(provider, "adopt", None)
        if adopt is None:
            continue
        known = {rec.name: dict(rec.metadata) for rec in live if rec.collection == collection}
        try:
            await adopt(known)
        except Exception:
            log.exception("adopting the instances of %s failed; the listing decides what is lost", collection)


async def save_metadata(driver: Driver, name: str, metadata: dict[str, Any]) -> None:
    async with driver.engine.begin() as conn:
        await instance_store.set_instance_metadata(conn, name, metadata)


async def keep_failure_metadata(driver: Driver, name: str, exc: BaseException) -> None:
    """A failed creation's details (e.g. the preparation report) stay visible on the instance."""
    extra = getattr(exc, "metadata", None)
    if not isinstance(extra, dict) or not extra:
        return
    try:
        async with driver.engine.begin() as conn:
            for rec in await instance_store.live_instances(conn):
                if rec.name == name:
                    await instance_store.set_instance_metadata(
                        conn, name, {**rec.metadata, **extra, "failure": str(exc)}
                    )
    except Exception:
        log.exception("could not keep the failure details of %s", name)


def use_instance_rate(driver: Driver, name: str, metadata: Mapping[str, Any]) -> None:
    """A provider that learns the instance's price at creation (a rented host's $/h) sets its rate."""
    rate = metadata.get("cost_per_core_hour")
    inst = driver.instances.get(name)
    if inst is not None and isinstance(rate, int | float) and not isinstance(rate, bool):
        inst.cost_per_core_hour = float(rate)


def record_health(driver: Driver, name: str, kept: dict[str, Any], listed: Mapping[str, Any]) -> bool:
    """Fold the listing's latest health sample into the instance's history; True when it changed."""
    sample = listed.get("health")
    if not isinstance(sample, dict):
        return False
    history = list(kept.get("health_history") or [])
    if history and history[-1].get("time") == sample.get("time"):
        return False
    kept["health"] = sample
    kept["health_history"] = [*history, sample][-20:]
    inst = driver.instances.get(name)
    if inst is not None and sample.get("healthy") is False:
        inst.draining = True  # no new work while the provider reports it gone
    return True
