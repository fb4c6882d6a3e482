"""The pure part of a driver tick: what happened (worker events, lost instances, isolated attempts) in,
a plan out (acknowledgements, attempts to release, outcomes to store, start times to record).

No I/O and no changes to its inputs (dask's worker state machine is the model): the driver applies the
plan to its memory and the store in `Driver._tick`; tests feed events and read the plan.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from corral.domain.attempts import clamp_time
from corral.driver.inbox import Inbox, Report
from corral.driver.instances import AttemptInFlight, InstanceState
from corral.driver.outcomes import completed_outcome, error_outcome, lost_outcome, returned_outcome
from corral.store.driver_records import AttemptOutcome
from corral.store.usage import UsageSample
from corral.worker.protocol import ReturnedEvent, ServingEvent, StartedEvent, UsageEvent


@dataclass
class TickPlan:
    acks: list[tuple[Report, list[str]]] = field(default_factory=list)  # keys acknowledged per report
    started: list[tuple[AttemptInFlight, float]] = field(default_factory=list)  # (attempt, start time)
    released: list[AttemptInFlight] = field(default_factory=list)  # attempts that no longer hold cores
    outcomes: list[AttemptOutcome] = field(default_factory=list)  # how they ended, for the store
    samples: list[UsageSample] = field(default_factory=list)  # running attempts' resource usage
    serving: list[tuple[AttemptInFlight, ServingEvent]] = field(default_factory=list)  # services now ready
    lost_instances: list[InstanceState] = field(default_factory=list)
    runs: list[tuple[InstanceState, float]] = field(default_factory=list)  # how long each ended job ran
    gave_back: list[InstanceState] = field(default_factory=list)  # instances that returned an attempt

    @property
    def start_times(self) -> list[tuple[int, int, int, float]]:
        """Starts to write on their own: one whose attempt also ended this tick goes with its end
        (AttemptOutcome.time_started), one statement row a short job less."""
        with_end = {(o.batch_id, o.job_id, o.attempt_id) for o in self.outcomes if o.time_started is not None}
        return [(f.batch_id, f.job_id, f.attempt_id, t) for f, t in self.started
                if (f.batch_id, f.job_id, f.attempt_id) not in with_end]


def plan_tick(instances: Mapping[str, InstanceState], inbox: Inbox, now: float) -> TickPlan:
    """Each attempt ends at most once per tick: the first thing heard about it wins (a completion
    reported in the same tick its instance was lost is a completion)."""
    plan = TickPlan()
    ended: set[str] = set()
    start_of: dict[str, float] = {}

    def end(flight: AttemptInFlight, outcome: AttemptOutcome | None) -> None:
        ended.add(flight.key)
        plan.released.append(flight)
        if outcome is not None:
            plan.outcomes.append(outcome)

    for report in inbox.reports:
        keys: list[str] = []
        inst = report.instance
        for event in report.events:
            keys.append(event.key)
            flight = inst.assigned.get(event.key)
            if flight is None or event.key in ended:
                continue  # a duplicate, or an attempt no longer ours: acknowledge, change nothing
            if isinstance(event, StartedEvent):
                start_of[event.key] = clamp_time(event.time, flight.time_assigned, now)
                plan.started.append((flight, start_of[event.key]))
                continue
            if isinstance(event, UsageEvent):
                plan.samples += usage_samples(flight, event, now)
                continue
            if isinstance(event, ServingEvent):
                plan.serving.append((flight, event))
                continue
            cancelled = event.key in inst.to_cancel  # its cancellation already ended it in the store
            seen = replace(flight, time_started=start_of.get(event.key, flight.time_started))
            if isinstance(event, ReturnedEvent):
                if not cancelled:  # a cancelled one comes back because it was cancelled: no reason to pause
                    plan.gave_back.append(inst)
                if seen.time_started is None:
                    end(flight, None if cancelled else returned_outcome(flight, event, now))
                else:  # it did start (the worker said so): it counts and is charged, as a lost one
                    end(flight, None if cancelled else lost_outcome(seen, "given back after it started", now))
                continue
            outcome = completed_outcome(seen, event, now)
            if not cancelled:
                plan.runs.append((inst, outcome.time_ended - (seen.time_started or seen.time_assigned)))
            end(flight, None if cancelled else outcome)
        plan.acks.append((report, keys))
    for errored in inbox.errored:
        inst_or_none = instances.get(errored.instance_name)
        flight = inst_or_none.assigned.get(errored.key) if inst_or_none is not None else None
        if flight is not None and flight.key not in ended:
            end(flight, error_outcome(flight, errored.reason, now))
    plan.lost_instances = [instances[name] for name in inbox.lost if name in instances]
    for inst in plan.lost_instances:
        reason = inbox.lost[inst.name]
        for flight in inst.assigned.values():
            if flight.key in ended:
                continue
            cancelled = flight.key in inst.to_cancel
            end(flight, None if cancelled else lost_outcome(flight, reason, now))
    return plan


def usage_samples(flight: AttemptInFlight, event: UsageEvent, now: float) -> list[UsageSample]:
    """A `usage` event's samples (validated at the edge), times clamped to the attempt's window."""
    return [
        UsageSample(flight.batch_id, flight.job_id, flight.attempt_id,
                    clamp_time(t, flight.time_assigned, now), cpu_mcpu, memory_bytes)
        for t, cpu_mcpu, memory_bytes in event.samples
    ]
