"""The driver's part of service jobs: record `serving` reports, fail the jobs of a service that ended
under them, stop services nobody waits on any more, and keep waiting jobs on (or off) their service's
instance. Runs inside the driver's tick (its transaction); keeps only what it can rebuild from the store.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy.ext.asyncio import AsyncConnection

from corral.domain.attempts import clamp_time
from corral.domain.placement import InstanceCapacity
from corral.domain.scheduling import Placement, ReadyJob, ReadyQueues
from corral.domain.services import dependent_failure_reason, placement_allows
from corral.domain.states import JobState
from corral.driver.instances import AttemptInFlight, InstanceState
from corral.store import scheduling as q
from corral.store import services as store
from corral.worker.protocol import ServingEvent

if TYPE_CHECKING:
    from corral.driver.driver import Driver

STOP_CHECK_INTERVAL = 1.0  # seconds between scans for services nobody waits on any more
STOP_RESEND = 3.0  # a stop not confirmed by the service's end is sent again after this long


class ServiceCoordinator:
    def __init__(self, driver: Driver) -> None:
        self.driver = driver
        self.placements: dict[tuple[int, int], tuple[str, str]] = {}
        self.stops: dict[str, tuple[str, float]] = {}  # attempt key -> (instance, last sent)
        self._last_check = 0.0

    async def rebuild(self, conn: AsyncConnection) -> None:
        self.placements = await store.load_placements(conn)
        self.stops.clear()
        self._last_check = 0.0

    # ------------------------------------------------------------ inside the tick

    async def apply(
        self,
        conn: AsyncConnection,
        serving: Sequence[tuple[AttemptInFlight, ServingEvent]],
        released: Sequence[AttemptInFlight],
        outcomes: Sequence[q.AttemptOutcome],
        cascade: q.CascadeResult,
        now: float,
    ) -> None:
        reports = [
            store.ServingReport(
                f.batch_id,
                f.job_id,
                f.attempt_id,
                f.instance_name,
                _endpoint(event),
                clamp_time(event.time, f.time_started or f.time_assigned, now),
            )
            for f, event in serving
        ]
        if reports:
            result = await store.mark_serving(conn, reports, now)
            cascade.merge(result.cascade)
            self.placements.update(result.placements)
        ended_services = [f for f in released if f.payload.get("spec", {}).get("service")]
        if ended_services:
            await self._services_ended(conn, ended_services, outcomes, cascade, now)
        clients_done = any(f.payload.get("spec", {}).get("service_links") for f in released)
        if clients_done or ended_services or time.monotonic() - self._last_check > STOP_CHECK_INTERVAL:
            self._last_check = time.monotonic()
            for b, j, a, instance in await store.services_to_stop(conn):
                key = f"{b}.{j}.{a}"
                if key not in self.stops:
                    self.stops[key] = (instance, 0.0)
                    inst = self.driver.instances.get(instance)
                    if inst is not None:
                        inst.notify()

    async def _services_ended(
        self,
        conn: AsyncConnection,
        ended: Sequence[AttemptInFlight],
        outcomes: Sequence[q.AttemptOutcome],
        cascade: q.CascadeResult,
        now: float,
    ) -> None:
        by_key = {(o.batch_id, o.job_id, o.attempt_id): o for o in outcomes}
        failing: list[tuple[int, int, str]] = []
        for flight in ended:
            stopped = self.stops.pop(flight.key, None) is not None
            outcome = by_key.get((flight.batch_id, flight.job_id, flight.attempt_id))
            if stopped and outcome is not None and outcome.job_state is JobState.SUCCESS:
                continue
            name = str(flight.payload.get("spec", {}).get("service_name") or f"job{flight.job_id}")
            status = (outcome.status or {}) if outcome is not None else {}
            why = status.get("error") if outcome is not None else "its instance was lost"
            code = outcome.exit_code if outcome is not None else None
            failing.append(
                (
                    flight.batch_id,
                    flight.job_id,
                    dependent_failure_reason(name, flight.job_id, code, why),
                )
            )
        if not failing:
            return
        result = await store.service_ended(conn, failing, now)
        cascade.merge(result.cascade)
        for dropped in result.dropped:
            for queues in self.driver.queues.values():
                queues.take(dropped)
        for b, j, a, instance_name in result.killed:
            inst = self.driver.instances.get(instance_name)
            key = f"{b}.{j}.{a}"
            if inst is None or key not in inst.assigned:
                continue
            if key in inst.delivered:
                inst.to_cancel.add(key)
            else:
                self.driver._release(inst.assigned[key])
            inst.notify()

    # ------------------------------------------------------------ scheduling

    def place_constrained(
        self, queues: ReadyQueues, capacities: list[InstanceCapacity]
    ) -> tuple[list[Placement], list[ReadyJob]]:
        """Jobs that must run on (or off) their service's instance, placed first; those that cannot be
        placed now are held out of this round so the fair-share planner does not put them elsewhere."""
        placements: list[Placement] = []
        held: list[ReadyJob] = []
        for key, (placement, service_instance) in list(self.placements.items()):
            job = queues.take(key)
            if job is None:
                continue
            fits = [
                c
                for c in capacities
                if placement_allows(placement, service_instance, c.name)  # type: ignore[arg-type]
                and c.fits(job.cores_mcpu, job.memory_bytes, job.gpus, job.gpu_type)
            ]
            if not fits:
                held.append(job)
                continue
            best = min(fits, key=lambda c: (c.free_mcpu, c.name))
            best.free_mcpu -= job.cores_mcpu
            best.free_memory_bytes -= job.memory_bytes
            best.free_gpus -= job.gpus
            placements.append(Placement(job, best.name))
            self.placements.pop(key, None)
        return placements, held

    # ------------------------------------------------------------ worker polls

    def stops_for(self, inst: InstanceState, known: set[str], force: bool = False) -> list[str]:
        """Attempt keys this worker must stop gracefully (SIGTERM, grace, SIGKILL): sent again until the
        service ends."""
        now = time.monotonic()
        out: list[str] = []
        for key, (instance, sent) in self.stops.items():
            if instance == inst.name and key in known and (force or now - sent > STOP_RESEND):
                out.append(key)
                self.stops[key] = (instance, now)
        return out


def _endpoint(event: ServingEvent) -> dict[str, Any]:
    return {
        "host": event.endpoint.host,
        "ports": dict(event.endpoint.ports),
        "scheme": event.endpoint.scheme,
        "probes": event.probes,
        "ready_seconds": event.ready_seconds,
    }
