"""What the driver's writer loop gathers between ticks, and how a failed tick's inbox is split up."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from sqlalchemy.exc import InterfaceError, OperationalError

from corral.driver.instances import InstanceState
from corral.worker.protocol import CompletedEvent, ReturnedEvent, ServingEvent, StartedEvent, UsageEvent

WorkerEvent = StartedEvent | CompletedEvent | ServingEvent | UsageEvent | ReturnedEvent


@dataclass
class Report:
    """Events of one /events call; `done` resolves with the acknowledged keys once they are durable."""

    instance: InstanceState
    events: list[WorkerEvent]
    done: asyncio.Future[list[str]]


@dataclass(frozen=True, slots=True)
class ErroredAttempt:
    """An attempt whose report the driver could not apply: its job ends in Error with this reason."""

    instance_name: str
    key: str
    reason: str


@dataclass
class Inbox:
    reports: list[Report] = field(default_factory=list)
    committed: set[int] = field(default_factory=set)
    cancelled: set[int] = field(default_factory=set)
    cancelled_groups: dict[int, set[int]] = field(default_factory=dict)  # batch -> job group ids
    lost: dict[str, str] = field(default_factory=dict)  # instance name -> reason
    errored: list[ErroredAttempt] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(
            self.reports or self.committed or self.cancelled or self.cancelled_groups or self.lost
            or self.errored
        )

    def put_back(self, other: Inbox) -> None:
        """Keep `other`'s items for the next tick (a tick that failed for a passing reason)."""
        self.reports[:0] = other.reports
        self.committed |= other.committed
        self.cancelled |= other.cancelled
        for batch_id, ids in other.cancelled_groups.items():
            self.cancelled_groups.setdefault(batch_id, set()).update(ids)
        self.lost = {**other.lost, **self.lost}
        self.errored[:0] = other.errored

    def items(self) -> list[Inbox]:
        """One inbox per item, one event per report: to find the item a tick cannot apply."""
        out: list[Inbox] = [Inbox(errored=[e]) for e in self.errored]
        out += [Inbox(committed={b}) for b in sorted(self.committed)]
        out += [Inbox(cancelled={b}) for b in sorted(self.cancelled)]
        out += [Inbox(cancelled_groups={b: ids}) for b, ids in self.cancelled_groups.items()]
        out += [Inbox(lost={name: reason}) for name, reason in self.lost.items()]
        return out


def is_passing(exc: BaseException) -> bool:
    """Failures of the database connection or lock, not of an item: retry the tick as it was."""
    return isinstance(exc, OperationalError | InterfaceError | TimeoutError | ConnectionError)
