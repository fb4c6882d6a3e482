"""What a committed tick changed, by batch, for listeners such as the web pages' live updates (pure)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

# batch id -> ids of jobs whose state may have changed; None: any job of the batch may have changed.
BatchChanges = dict[int, set[int] | None]
TickListener = Callable[[BatchChanges], None]


def tick_changes(
    *,
    jobs: Iterable[tuple[int, int]],
    whole_batches: Iterable[int],
    outcomes: Iterable[Any],
) -> BatchChanges:
    """`jobs`: (batch, job) moved this tick; `whole_batches`: committed or cancelled batches;
    `outcomes`: ended attempts (a failure may cancel any of its batch's descendants)."""
    changes: BatchChanges = {}
    for batch_id in whole_batches:
        changes[batch_id] = None
    for outcome in outcomes:
        changes.setdefault(outcome.batch_id, set())
        if str(outcome.job_state) not in ("Success", "Ready"):
            changes[outcome.batch_id] = None
        else:
            _add(changes, outcome.batch_id, outcome.job_id)
    for batch_id, job_id in jobs:
        _add(changes, batch_id, job_id)
    return changes


def _add(changes: BatchChanges, batch_id: int, job_id: int) -> None:
    known = changes.setdefault(batch_id, set())
    if known is not None:
        known.add(job_id)
