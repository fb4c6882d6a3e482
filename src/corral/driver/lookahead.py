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
PAUSE_AFTER_RETURN seconds. Then it may hand over its cores' worth of jobs beyond what is free, and more
for jobs much shorter than a round trip: as many cores' worth as its typical run fits in COVER_S (at most
MAX_DEPTH), so that the held jobs last about one round trip. A held job then waits at most about
max(COVER_S, its predecessors' runs) more than it would on an idle core. A run as the driver sees it
is from its start to the worker noticing its end: 5-20 ms for `true` on a busy 2-core host, four deep.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from corral.driver.instances import InstanceState

SHORT_RUN_S = 0.5
SHORT_RUNS_NEEDED = 8
PAUSE_AFTER_RETURN = 30.0
COVER_S = 0.05  # what the held jobs should last: an events round trip (5-20 ms on one busy host), with margin
MAX_DEPTH = 4  # cores' worth held at most (jobs of COVER_S / MAX_DEPTH or shorter get this many)
TYPICAL_WEIGHT = 0.2  # of the latest run in the typical run time (a moving average)


@dataclass(slots=True)
class LookaheadState:
    """What the driver has seen of an instance's jobs, for deciding whether to look ahead."""

    short_runs: int = 0  # consecutive ends of jobs that ran under SHORT_RUN_S
    typical_run: float = SHORT_RUN_S  # seconds: moving average of those runs (SHORT_RUN_S: none yet)
    paused_until: float = 0.0  # after a give-back: no lookahead on this instance until then

    def ran(self, seconds: float) -> None:
        if seconds >= SHORT_RUN_S:
            self.short_runs, self.typical_run = 0, SHORT_RUN_S
            return
        seconds = max(0.0, seconds)
        self.typical_run = seconds if self.short_runs == 0 else (
            (1 - TYPICAL_WEIGHT) * self.typical_run + TYPICAL_WEIGHT * seconds
        )
        self.short_runs += 1

    def gave_back(self, now: float) -> None:
        self.short_runs, self.typical_run = 0, SHORT_RUN_S
        self.paused_until = now + PAUSE_AFTER_RETURN

    def depth(self) -> int:
        """Cores' worth to hold: 1, or more for runs much shorter than COVER_S (at most MAX_DEPTH)."""
        if self.typical_run <= 0:
            return MAX_DEPTH
        return max(1, min(MAX_DEPTH, int(COVER_S / self.typical_run)))


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
    return inst.cores_mcpu * state.depth()
