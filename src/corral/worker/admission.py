"""Assignments this worker holds until its cores free: a driver that looks ahead (driver/lookahead.py)
hands a worker that declared `queues` a few jobs beyond its free cores, for streams of short jobs.

First in, first out: a held assignment starts as soon as the cores it asks for are free (or at once on an
idle worker, whatever it asks); one held GIVE_BACK_AFTER seconds is given back to the driver (a
`returned` event) to run elsewhere or later, not counted against the job's attempts and not charged.
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass

from corral.worker.protocol import Assignment

GIVE_BACK_AFTER = 2.0  # seconds: far longer than the short jobs the driver looks ahead for (0.5 s)


@dataclass(frozen=True, slots=True)
class Held:
    assignment: Assignment
    cancel: asyncio.Event
    since: float  # time.monotonic() when it arrived


class Admission:
    """Which assignments run now and which wait for cores (the worker's own count of its cores)."""

    def __init__(self, cores_mcpu: int, give_back_after: float = GIVE_BACK_AFTER) -> None:
        self.cores_mcpu = cores_mcpu
        self.give_back_after = give_back_after
        self.used_mcpu = 0
        self.held: deque[Held] = deque()

    def _fits(self, cores_mcpu: int) -> bool:
        return self.used_mcpu == 0 or self.used_mcpu + cores_mcpu <= self.cores_mcpu

    def offer(self, held: Held) -> bool:
        """True: start it now (its cores are counted until `ended`); False: it waits, behind any other."""
        if not self.held and self._fits(held.assignment.cores_mcpu):
            self.used_mcpu += held.assignment.cores_mcpu
            return True
        self.held.append(held)
        return False

    def freed(self, assignment: Assignment) -> None:
        """An attempt that started has ended: its cores are free (nothing else starts)."""
        self.used_mcpu = max(0, self.used_mcpu - assignment.cores_mcpu)

    def ended(self, assignment: Assignment) -> list[Held]:
        """An attempt that started has ended: its cores are free; returns what starts now, in order."""
        self.freed(assignment)
        starting: list[Held] = []
        while self.held and self._fits(self.held[0].assignment.cores_mcpu):
            held = self.held.popleft()
            self.used_mcpu += held.assignment.cores_mcpu
            starting.append(held)
        return starting

    def overdue(self, now: float) -> list[Held]:
        """Those held `give_back_after` seconds or more, no longer held (to give back)."""
        late = [h for h in self.held if now - h.since >= self.give_back_after]
        if late:
            self.held = deque(h for h in self.held if now - h.since < self.give_back_after)
        return late

    def take(self, key: str) -> Held | None:
        """A held assignment, no longer held (cancelled before it started); None if it is not held."""
        for held in self.held:
            if held.assignment.key == key:
                self.held.remove(held)
                return held
        return None

    def take_all(self) -> list[Held]:
        taken, self.held = list(self.held), deque()
        return taken
