"""The worker agent: activate, long-poll for assignments, run attempts, report events until acked.

Signals: the first SIGTERM/SIGINT drains (no new work, running jobs finish and are reported, then
deactivate and exit 0); a second one stops at once (jobs are killed, the driver treats them as lost).
With `stop_on_term` (SLURM pilots) the first SIGTERM stops at once: SLURM signals every process of the
allocation, jobs included, so their exits must not be reported as failures but given back as lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import time
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import psutil

from corral import __version__
from corral.errors import CorralError, InvalidInput
from corral.runtimes import Runtime, RuntimeUnavailable, runtime_class
from corral.runtimes.base import now
from corral.runtimes.childwatch import install_pidfd_watcher
from corral.worker.admission import Admission, Held
from corral.worker.attempt import run_attempt
from corral.worker.cleanup import claim, clean_dead_siblings, clean_previous, forget_worker, record_worker
from corral.worker.client import Backoff, DriverClient, Rejected, Unauthorized, retry_forever
from corral.worker.gpus import GpuDevices, device_nodes, visible_devices_env
from corral.worker.layout import AttemptDirs, ScratchLayout, default_work_dir
from corral.worker.ledger import AttemptLedger
from corral.worker.outbox import EventOutbox
from corral.worker.protocol import Assignment, StepName, carries_work, parse_assignment
from corral.worker.reaper import Reaped, reap_dead_workers
from corral.worker.scratch_pool import ScratchPool
from corral.worker.service import ServiceRunner
from corral.worker.sweeper import ScratchSweeper

log = logging.getLogger(__name__)

BATCH_WINDOW = 0.002  # seconds to gather events into one /events call
# `started` alone is not urgent: held this long for the attempt's end (or another event) to go with it, so
# a short job costs one events round trip, not two. The job shows Running this much later at most.
STARTED_WINDOW = 0.05
LAZY_EVENTS = frozenset({"started"})
MAX_BATCH = 1000
# Events posts on the wire at once. 2 measured no better, twice (400 `true` jobs; again after the driver
# got faster: process runtime the same jobs/s, host runtime 5 % fewer, both ~0.4 ms more server CPU a job):
# an end leaves sooner, but each post then carries fewer events and waits for the driver's commit. The
# outbox keeps an attempt's events in order across posts whatever this is. The host runtime's workers had
# two posts and no window while the driver held them one cores' worth of jobs ahead; with jobs held as
# deep as a round trip (driver/lookahead.py) these settings are better there too (bench.cpu_per_job, host,
# 3000 `true` jobs, 3 + 3 interleaved: 468-484 -> 535-549 jobs/s, server CPU 1.05 -> 0.66 ms a job).
POSTS_IN_FLIGHT = 1
GIVE_BACK_CHECK = 0.25  # seconds between looks for held assignments to give back (worker/admission.py)


@dataclass
class ProtocolCounts:
    """Round trips to the driver and where assignments came from (the hot path's shape, for tests/bench)."""

    polls: int = 0  # poll replies received
    events_posts: int = 0  # events replies received
    assigned_by_poll: int = 0  # new attempts started from a poll reply
    assigned_by_events: int = 0  # new attempts started from an events reply
    held: int = 0  # assignments that waited for cores first (worker/admission.py)
    given_back: int = 0  # held assignments given back unstarted


class WorkerExit(CorralError):
    """Ends the worker with a message for the operator and a non-zero exit code."""


def machine_cores() -> float:
    try:
        return float(len(os.sched_getaffinity(0)))
    except AttributeError:
        return float(os.cpu_count() or 1)


class Agent:
    def __init__(
        self,
        url: str,
        name: str,
        token: str,
        *,
        cores: float | None = None,
        memory_bytes: int | None = None,
        runtime: str = "process",
        work_dir: Path | None = None,
        client: DriverClient | None = None,
        stop_on_term: bool = False,
    ) -> None:
        self.name = name
        self.cores_mcpu = max(1, round((cores or machine_cores()) * 1000))
        self.memory_bytes = memory_bytes or psutil.virtual_memory().total
        self.runtime_name = runtime
        self.layout = ScratchLayout(work_dir or default_work_dir(name))
        self.client = client or DriverClient(url, token)
        self.ledger = AttemptLedger()
        self.outbox = EventOutbox(LAZY_EVENTS, STARTED_WINDOW)
        self.runtime: Runtime | None = None
        self.heartbeat_interval = 2.0
        self.draining = asyncio.Event()
        self.stopping = asyncio.Event()  # hard stop: a second signal, or the driver disowned us
        self.fatal: str | None = None
        self.stop_on_term = stop_on_term
        self._attempts: dict[str, asyncio.Task[None]] = {}
        self.admission = Admission(self.cores_mcpu)
        self.gpus = GpuDevices.from_env()
        self.services = ServiceRunner(url)
        self.counts = ProtocolCounts()
        self.sweeper = ScratchSweeper(self.layout.trash)
        self.scratch_pool = ScratchPool(self.layout.idle)
        self._lock = -1  # flock on <work_dir>/worker.lock while this worker lives (worker/cleanup.py)
        self._reaping: asyncio.Task[Reaped] | None = None

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        self._install_signal_handlers()
        work_dir = self.layout.work_dir
        try:
            self._lock = await asyncio.to_thread(claim, work_dir)
        except BlockingIOError:
            raise WorkerExit(f"corral worker {self.name}: another live worker uses {work_dir}") from None
        await asyncio.to_thread(clean_previous, work_dir)
        await asyncio.to_thread(record_worker, work_dir)
        await asyncio.to_thread(clean_dead_siblings, work_dir)
        # Any other dead worker's leftovers on this host, off the start's path (bounded; worker/reaper.py).
        self._reaping = asyncio.create_task(asyncio.to_thread(reap_dead_workers, work_dir), name="reaper")
        try:
            cls = runtime_class(self.runtime_name)
            self.runtime = cls(instance_name=self.name, work_dir=self.layout.work_dir)
            await self.runtime.start()
        except (RuntimeUnavailable, InvalidInput) as exc:
            raise WorkerExit(f"corral worker {self.name}: {exc.message}") from None
        await asyncio.to_thread(self.layout.prepare)
        sweeping = asyncio.create_task(self.sweeper.run(), name="scratch-sweeper")
        try:
            if await self._activate():
                await self._serve()
        finally:
            sweeping.cancel()
            await asyncio.gather(sweeping, return_exceptions=True)
            for idle in self.scratch_pool.drain():
                self.sweeper.discard(idle)
            await self.sweeper.flush()
            await self._close()
        if self.fatal:
            raise WorkerExit(self.fatal)

    async def _activate(self) -> bool:
        activation = asyncio.ensure_future(
            retry_forever(
                lambda: self.client.activate(
                    self.cores_mcpu, self.memory_bytes, __version__, [self.runtime_name],
                    queues=self._quick_starts,
                ),
                "activate",
            )
        )
        stop = asyncio.ensure_future(self.draining.wait())
        try:
            await asyncio.wait({activation, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
        if not activation.done():
            activation.cancel()
            return False  # told to stop before the driver was ever reached
        try:
            reply = activation.result()
        except Unauthorized as exc:
            raise WorkerExit(
                f"corral worker {self.name}: activation refused (HTTP 401): the instance token is unknown "
                f"or the instance was deleted; check --token/CORRAL_WORKER_TOKEN ({exc.message})"
            ) from None
        except Rejected as exc:
            raise WorkerExit(f"corral worker {self.name}: activation rejected: {exc.message}") from None
        self.heartbeat_interval = float(reply.get("heartbeat_interval") or 2.0)
        log.info(
            "worker %s active: %.3g cores, %d bytes, runtime %s", self.name, self.cores_mcpu / 1000,
            self.memory_bytes, self.runtime_name,
        )
        return True

    @property
    def _quick_starts(self) -> bool:
        """A runtime of quick starts (Runtime.quick_starts): the worker takes assignments beyond its free
        cores (worker/admission.py), where the cores otherwise idle for an events round trip between short
        jobs."""
        return self.runtime is not None and self.runtime.quick_starts

    async def _serve(self) -> None:
        sender = asyncio.create_task(self._send_loop(), name="events")
        poller = asyncio.create_task(self._poll_loop(), name="poll")
        giver = asyncio.create_task(self._give_back_loop(), name="give-back")
        await _first(self.draining, self.stopping)
        poller.cancel()
        giver.cancel()
        if not self.stopping.is_set():
            for held in self.admission.take_all():  # draining: what has not started runs elsewhere
                self._give_back(held)
            log.info("draining: %d attempts running", len(self._attempts))
            await _first_done(self._wait_attempts(), self.stopping)
            await _first_done(self.outbox.wait_empty(), self.stopping)
        if self.stopping.is_set():
            for task in self._attempts.values():
                task.cancel()  # the runtime kills the job; nothing is reported: deactivation loses it
            await asyncio.gather(*self._attempts.values(), return_exceptions=True)
        sender.cancel()
        await asyncio.gather(sender, poller, giver, return_exceptions=True)
        if self.fatal is None:
            await self._deactivate()

    async def _wait_attempts(self) -> None:
        while self._attempts:
            await asyncio.gather(*self._attempts.values(), return_exceptions=True)

    async def _deactivate(self) -> None:
        try:
            await asyncio.wait_for(retry_forever(self.client.deactivate, "deactivate"), 10.0)
            log.info("worker %s deactivated", self.name)
        except (TimeoutError, Unauthorized, Rejected) as exc:
            log.warning("could not deactivate (the driver will notice the silence): %r", exc)

    async def _close(self) -> None:
        if self._reaping is not None:
            await asyncio.gather(self._reaping, return_exceptions=True)
        if self.runtime is not None:
            await self.runtime.close()
        await asyncio.to_thread(forget_worker, self.layout.work_dir)
        await self.client.aclose()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal, sig)

    def _on_signal(self, sig: int) -> None:
        if self.stop_on_term and sig == signal.SIGTERM:
            log.warning("SIGTERM: the allocation is ending; stopping now, running jobs are given back")
            self.draining.set()
            self.stopping.set()
        elif self.draining.is_set():
            log.warning("second %s: stopping now, killing running jobs", signal.Signals(sig).name)
            self.stopping.set()
        else:
            log.info("%s: draining", signal.Signals(sig).name)
            self.draining.set()

    def _disowned(self, exc: Unauthorized) -> None:
        self.fatal = f"corral worker {self.name}: the driver no longer accepts this instance ({exc.message})"
        self.stopping.set()

    # ------------------------------------------------------------ polling

    async def _poll_loop(self) -> None:
        backoff = Backoff()
        while True:
            try:
                reply = await retry_forever(
                    lambda: self.client.poll(self.ledger.known(), self.heartbeat_interval), "poll", backoff
                )
            except Unauthorized as exc:
                self._disowned(exc)
                return
            except Rejected as exc:
                log.error("poll rejected: %s", exc.message)
                await asyncio.sleep(backoff.next_delay())
                continue
            self.counts.polls += 1
            self.handle_poll(reply)
            if reply.get("shutdown"):
                log.info("the driver asked this worker to shut down")
                self.draining.set()
                return

    def handle_poll(self, reply: dict[str, Any], *, via_events: bool = False) -> None:
        """Apply a poll reply (or the same fields carried in an events reply)."""
        for key in reply.get("stop") or []:  # services nobody waits on any more: stop gracefully
            if self.services.request_stop(str(key)):
                log.info("stopping service %s", key)
        for key in reply.get("cancel") or []:
            if self.ledger.cancel(str(key)):
                log.info("cancelling %s", key)
                held = self.admission.take(str(key))
                if held is not None:  # never started: given back (the driver has ended it already)
                    self._give_back(held)
        for raw in reply.get("assign") or []:
            key = str(raw.get("key"))
            cancel = self.ledger.accept(key)
            if cancel is None:
                continue  # already running or finished here
            try:
                assignment = parse_assignment(raw)
            except InvalidInput as exc:
                self._report_unreadable(key, exc.message)
                continue
            if self.admission.offer(Held(assignment, cancel, time.monotonic())):
                self._start(assignment, cancel)
            else:
                self.counts.held += 1
            if via_events:
                self.counts.assigned_by_events += 1
            else:
                self.counts.assigned_by_poll += 1

    def _start(self, assignment: Assignment, cancel: asyncio.Event) -> None:
        task = asyncio.create_task(self._attempt(assignment, cancel), name=f"attempt-{assignment.key}")
        self._attempts[assignment.key] = task

    def _cores_freed(self, assignment: Assignment) -> None:
        if self.stopping.is_set():  # stopping at once: nothing more starts (held ones are lost with the rest)
            self.admission.freed(assignment)
            return
        for held in self.admission.ended(assignment):
            self._start(held.assignment, held.cancel)

    def _give_back(self, held: Held) -> None:
        key = held.assignment.key
        self.ledger.finished(key)
        self.counts.given_back += 1
        waited = max(0.0, time.monotonic() - held.since)
        log.info("giving back %s: not started after %.1fs waiting for cores", key, waited)
        self.outbox.put({"type": "returned", "key": key, "time": now(), "waited": round(waited, 3)})

    async def _give_back_loop(self) -> None:
        """Held assignments that waited too long go back to the driver."""
        while True:
            await asyncio.sleep(GIVE_BACK_CHECK)
            for held in self.admission.overdue(time.monotonic()):
                self._give_back(held)

    def _report_unreadable(self, key: str, message: str) -> None:
        self.ledger.finished(key)
        self.outbox.put({
            "type": "completed", "key": key, "time": now(), "state": "error", "exit_code": None,
            "error": f"the worker could not read this assignment: {message}", "out_of_memory": False,
            "timed_out": False, "container_statuses": {"input": None, "main": None, "output": None},
            "resource_usage": {"max_memory_bytes": 0, "cpu_seconds": 0.0},
        })

    # ------------------------------------------------------------ attempts

    async def _attempt(self, assignment: Assignment, cancel: asyncio.Event) -> None:
        assert self.runtime is not None
        dirs = self.layout.attempt(assignment.key)
        devices = self.gpus.acquire(assignment.key, assignment.spec.gpus)
        if devices is None:
            wanted = assignment.spec.gpus
            self._report_unreadable(assignment.key, f"{wanted} GPUs requested, fewer are free on this worker")
            self._attempts.pop(assignment.key, None)
            self._cores_freed(assignment)
            return
        if self.gpus.ids or devices:
            env = {**assignment.spec.env, **visible_devices_env(devices)}
            nodes = tuple(str(node) for node in device_nodes(devices))
            assignment = replace(assignment, spec=replace(assignment.spec, env=env), devices=nodes)
        try:
            if self.runtime.reuses_scratch:
                self.scratch_pool.take(dirs)  # a clean tree of an ended attempt, if one is idle
            completed = await run_attempt(
                assignment, self.runtime, dirs, cancel, emit=self.outbox.put, upload_log=self._upload_log,
                services=self.services,
            )
            self.ledger.finished(assignment.key)
            self.outbox.put(completed)
        except Exception:
            log.exception("attempt %s crashed", assignment.key)
            self._report_unreadable(assignment.key, "worker error while running the attempt")
        finally:
            self.gpus.release(assignment.key)
            self._attempts.pop(assignment.key, None)
            self._cores_freed(assignment)
            if self.runtime.uses_scratch:
                await asyncio.shield(self._remove_scratch(dirs))

    async def _remove_scratch(self, dirs: AttemptDirs) -> None:
        assert self.runtime is not None
        try:
            await self.runtime.release_io(dirs.volume)
        except OSError as exc:
            log.warning("could not release the io volume of %s: %s", dirs.root, exc)
        else:
            if self.runtime.reuses_scratch and self.scratch_pool.give_back(dirs):
                return  # kept for the next attempt (worker/scratch_pool.py)
        self.sweeper.discard(dirs.root)  # one rename now; deleted with others in the background

    async def _upload_log(self, assignment: Assignment, step: StepName, data: bytes) -> None:
        a = assignment
        try:
            await retry_forever(
                lambda: self.client.put_log(a.batch_id, a.job_id, a.attempt_id, step, data),
                f"log {a.key}/{step}",
            )
        except Rejected as exc:
            log.warning("log %s/%s not accepted: %s", a.key, step, exc.message)
        except Unauthorized as exc:
            self._disowned(exc)

    # ------------------------------------------------------------ events

    async def _exchange(self, batch: list[dict[str, Any]]) -> dict[str, Any]:
        if self.draining.is_set():  # no new work while draining: events only, as an older worker sends
            return {"ack": await self.client.send_events(batch)}
        # `known` is read as each try is sent, so a retry carries the current one.
        return await self.client.exchange_events(batch, self.ledger.known())

    async def _send_loop(self) -> None:
        """Post events as they come, up to POSTS_IN_FLIGHT posts on the wire at once; the outbox keeps each
        attempt's events in order across posts."""
        posts: set[asyncio.Task[None]] = set()
        try:
            while True:
                while len(posts) >= POSTS_IN_FLIGHT:
                    await asyncio.wait(posts, return_when=asyncio.FIRST_COMPLETED)
                idle_timeout = self.heartbeat_interval if self.draining.is_set() else None
                if not await self.outbox.wait_for_events(idle_timeout):
                    if posts:
                        continue  # a post on the wire is heartbeat enough
                    batch: list[dict[str, Any]] = []  # a heartbeat while draining: polls have stopped
                else:
                    await asyncio.sleep(BATCH_WINDOW)
                    if self.stopping.is_set():
                        return  # exits seen while stopping are the kill's doing: the driver gets them as lost
                    batch = self.outbox.take(MAX_BATCH)
                    if not batch:
                        continue  # what was waiting went out in another post meanwhile
                post = asyncio.create_task(self._post(batch), name="events-post")
                posts.add(post)
                post.add_done_callback(posts.discard)
                if not batch:
                    await asyncio.wait({post})  # one heartbeat at a time
        finally:
            for post in posts:
                post.cancel()
            await asyncio.gather(*posts, return_exceptions=True)

    async def _post(self, batch: list[dict[str, Any]]) -> None:
        """One events post, retried until the driver answers; its events settle or wait to be resent."""
        backoff = Backoff()
        try:
            reply = await retry_forever(partial(self._exchange, batch), "events", backoff)
        except Unauthorized as exc:
            self.outbox.release(batch)
            self._disowned(exc)
            return
        except Rejected as exc:
            log.error("events rejected, retrying: %s", exc.message)
            await asyncio.sleep(backoff.next_delay())
            self.outbox.release(batch)
            return
        except BaseException:
            self.outbox.release(batch)
            raise
        self.counts.events_posts += 1
        acked = [str(k) for k in reply.get("ack", [])]
        for key in self.outbox.settle(batch, acked):
            self.ledger.acknowledged(key)
        if carries_work(reply) and not self.draining.is_set():
            # The driver answered as a poll would: new work without a separate poll round trip.
            self.handle_poll(reply, via_events=True)
            if reply.get("shutdown"):
                log.info("the driver asked this worker to shut down")
                self.draining.set()


async def _first(*events: asyncio.Event) -> None:
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


async def _first_done(work: Any, stop: asyncio.Event) -> None:
    """Await `work` unless `stop` is set first."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()


def run_worker(
    url: str,
    name: str,
    token: str,
    *,
    cores: float | None = None,
    memory_bytes: int | None = None,
    runtime: str = "process",
    work_dir: Path | None = None,
    stop_on_term: bool = False,
) -> None:
    """Run a worker until drained (exit 0). Raises SystemExit with a message when it cannot go on."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    async def main() -> None:
        agent = Agent(
            url, name, token, cores=cores, memory_bytes=memory_bytes, runtime=runtime, work_dir=work_dir,
            stop_on_term=stop_on_term,
        )
        await agent.run()

    # Not uvloop: libuv spawns with fork() (2 ms, growing with the worker size), asyncio with vfork (0.8).
    # A pidfd per job in the loop instead of a waitpid thread per job (Python 3.11's default watcher).
    install_pidfd_watcher()
    runner = asyncio.Runner()
    try:
        with runner:
            runner.run(main())
    except WorkerExit as exc:
        raise SystemExit(str(exc)) from None
