"""Handing a worker a few jobs beyond its free cores (lookahead), for streams of short jobs.

A worker that declared `queues` at activation holds an assignment that does not fit its free cores,
first in first out, and starts it as soon as one of its jobs ends. With jobs of a few milliseconds the
cores otherwise idle for a whole events round trip between one job and the next (the end reported, the
driver's tick, the next job handed back). What the worker cannot start within its wait it gives back (a
`returned` event): the job runs again, and that attempt is neither counted against n_max_attempts nor
charged (domain/attempts.py, driver/accounting.py).

The driver looks ahead only where, by what it has seen, the wait is short: the instance's last
SHORT_RUNS_NEEDED jobs each ran under SHORT_RUN_S, none of its attempts was handed over longer ago than
that, it has no GPUs and runs no job-private work, and it gave nothing back in the last
PAUSE_AFTER_RETURN seconds. Then it may hand over SHARE_PERCENT of its cores beyond what is free.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from corral.driver.instances import InstanceState

SHORT_RUN_S = 0.5
SHORT_RUNS_NEEDED = 8
SHARE_PERCENT = 100
PAUSE_AFTER_RETURN = 30.0


@dataclass(slots=True)
class LookaheadState:
    """What the driver has seen of an instance's jobs, for deciding whether to look ahead."""

    short_runs: int = 0  # consecutive ends of jobs that ran under SHORT_RUN_S
    paused_until: float = 0.0  # after a give-back: no lookahead on this instance until then

    def ran(self, seconds: float) -> None:
        self.short_runs = self.short_runs + 1 if seconds < SHORT_RUN_S else 0

    def gave_back(self, now: float) -> None:
        self.short_runs = 0
        self.paused_until = now + PAUSE_AFTER_RETURN


def lookahead_mcpu(inst: InstanceState, now: float) -> int:
    """Cores (mcpu) the driver may hand `inst` beyond its free ones now."""
    state = inst.lookahead
    if (
        not inst.queues or inst.gpus or inst.reserved_for is not None or now < state.paused_until
        or state.short_runs < SHORT_RUNS_NEEDED
    ):
        return 0
    for flight in inst.assigned.values():
        since = flight.time_started if flight.time_started is not None else flight.time_assigned
        if now - since > SHORT_RUN_S:
            return 0  # a job that has run (or waited) this long may run much longer: nothing queues behind it
    return inst.cores_mcpu * SHARE_PERCENT // 100
