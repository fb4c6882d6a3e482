"""Whether each instance collection's provider can bring instances up: failures in a row, exponential
backoff between tries, 'failing' after several, recorded in the store for `corral pool list` and the
users whose jobs wait, and each distinct error logged once (not once per retry).

A failure is an instance that could not be created, or that went away before its worker ever called in
(a pilot whose `worker_python` does not exist, a host without python3, a wrong SSH port or key). The
first instance whose worker calls in ends the run of failures.
"""

from __future__ import annotations

import logging
import re
import uuid
from dataclasses import dataclass, field

from sqlalchemy.ext.asyncio import AsyncEngine

from corral.providers.base import ProviderInstance
from corral.store import system_view

log = logging.getLogger("corral.autoscaler")

BASE_DELAY = 1.0  # seconds after the first failure; doubled after each further one
MAX_DELAY = 60.0  # a failing pool is still tried once a minute: a host back up is found soon
FAILING_AFTER = 4  # failures in a row after which the collection is marked failing


@dataclass
class Health:
    failures: int = 0  # in a row
    last_error: str | None = None
    time_last_error: float | None = None
    retry_at: float = 0.0
    logged: str | None = None  # the last error text written to the log
    attempts: int = 0  # every failure since the server started (tests count retries with it)

    @property
    def state(self) -> str:
        if self.failures == 0:
            return "ok"
        return "failing" if self.failures >= FAILING_AFTER else "backing_off"


@dataclass
class CollectionHealth:
    base_delay: float = BASE_DELAY
    max_delay: float = MAX_DELAY
    failing_after: int = FAILING_AFTER
    of: dict[str, Health] = field(default_factory=dict)
    _dirty: set[str] = field(default_factory=set)

    def _get(self, collection: str) -> Health:
        return self.of.setdefault(collection, Health())

    def allows(self, collection: str, now: float) -> bool:
        """May the autoscaler try to create an instance of `collection` now?"""
        return now >= self._get(collection).retry_at

    def delay(self, failures: int) -> float:
        return min(self.max_delay, self.base_delay * float(2 ** max(0, failures - 1)))

    def failed(self, collection: str, error: str, now: float) -> None:
        h = self._get(collection)
        h.failures += 1
        h.attempts += 1
        h.last_error, h.time_last_error = error, now
        wait = self.delay(h.failures)
        h.retry_at = now + wait
        self._dirty.add(collection)
        key = _same_failure(collection, error)
        if key != h.logged:
            log.warning("pool %s cannot bring up instances: %s (retrying in %.0fs; further identical "
                        "failures are not logged)", collection, error, wait)
            h.logged = key
        else:
            log.debug("pool %s: failure %d in a row: %s", collection, h.failures, error)
        if h.failures == self.failing_after:
            log.error("pool %s is failing: %d attempts in a row could not bring up an instance; retrying "
                      "every %.0fs at most (see `corral pool list`)", collection, h.failures, self.max_delay)

    def recovered(self, collection: str) -> None:
        """An instance of `collection` came up (its worker called in)."""
        h = self._get(collection)
        if h.failures:
            log.warning("pool %s recovered after %d failed attempts", collection, h.failures)
            h.failures, h.retry_at, h.logged = 0, 0.0, None
            self._dirty.add(collection)

    async def flush(self, engine: AsyncEngine) -> None:
        """Write what changed to the store (once per autoscaler tick)."""
        if not self._dirty:
            return
        dirty, self._dirty = self._dirty, set()
        async with engine.begin() as conn:
            for name in sorted(dirty):
                h = self.of[name]
                await system_view.set_collection_health(
                    conn, name, health=h.state, last_error=h.last_error, time_last_error=h.time_last_error,
                    n_failures=h.failures,
                )


def _same_failure(collection: str, error: str) -> str:
    """The error without what changes from one try to the next (instance names, job ids, ports)."""
    text = re.sub(rf"{re.escape(collection)}-(?:[A-Za-z0-9_.]+-)?[0-9a-f]{{8}}", "<instance>", error)
    return re.sub(r"\d+", "N", text)


def gone_reason(found: ProviderInstance, *, activated: bool) -> str:
    """Why the provider says an instance is gone, with what it knows (SLURM state, exit code, output)."""
    reason = found.reason or "gone"
    meta = found.metadata or {}
    details = [f"{k.replace('_', ' ')} {meta[k]}" for k in ("slurm_state", "exit_code") if meta.get(k)]
    if meta.get("output"):
        details.append(f"its output: {meta['output']}")
    text = f"{reason} ({', '.join(details)})" if details else reason
    return text if activated else f"it ended before its worker called in: {text}"


def instance_name(collection: str, user: str | None = None) -> str:
    """`hpc-1a2b3c4d`; a job-private instance also names its user (`gpu-alice-1a2b3c4d`), so the
    provider's own listing (squeue, the cloud console) shows whom it serves."""
    tag = re.sub(r"[^A-Za-z0-9_.]", "_", user)[:32] + "-" if user else ""
    return f"{collection}-{tag}{uuid.uuid4().hex[:8]}"
