"""When the driver hands a worker jobs beyond its free cores (driver/lookahead.py), and the worker's side:
what it holds, starts and gives back (worker/admission.py); the retry rule for given-back attempts."""

from __future__ import annotations

import asyncio

from corral.domain.attempts import RETURNED, after_lost_attempt
from corral.domain.states import JobState
from corral.driver.instances import AttemptInFlight, InstanceState
from corral.driver.lookahead import (
    COVER_S,
    MAX_DEPTH,
    PAUSE_AFTER_RETURN,
    SHORT_RUN_S,
    SHORT_RUNS_NEEDED,
    lookahead_mcpu,
)
from corral.worker.admission import Admission, Held
from corral.worker.protocol import Assignment, JobSpec

NOW = 5_000.0


def _instance(*, queues: bool = True, short_runs: int = SHORT_RUNS_NEEDED, run: float = 0.1) -> InstanceState:
    inst = InstanceState("w1", "default", "hash", 2000, 8 << 30, queues=queues)
    for _ in range(short_runs):
        inst.lookahead.ran(run)
    return inst


def _flight(inst: InstanceState, job_id: int, assigned: float, started: float | None = None) -> None:
    flight = AttemptInFlight(1, job_id, 1, "alice", "default", 250, 1 << 20, {}, assigned, inst.name,
                             time_started=started)
    inst.assigned[flight.key] = flight


def test_a_worker_that_queues_and_runs_short_jobs_gets_its_cores_again_ahead() -> None:
    inst = _instance()
    _flight(inst, 1, NOW - 0.1, NOW - 0.05)
    assert lookahead_mcpu(inst, NOW) == 2000


def test_jobs_much_shorter_than_a_round_trip_are_held_deeper_and_no_longer_than_about_one() -> None:
    assert lookahead_mcpu(_instance(run=0.003), NOW) == MAX_DEPTH * 2000  # `true` on the host runtime
    assert lookahead_mcpu(_instance(run=COVER_S / 2.5), NOW) == 2 * 2000
    assert lookahead_mcpu(_instance(run=COVER_S), NOW) == 2000
    for ms in range(1, 150):  # held jobs last about one round trip: never more deep than COVER_S allows
        depth = lookahead_mcpu(_instance(run=ms / 1000), NOW) // 2000
        assert 1 <= depth <= MAX_DEPTH
        assert depth == 1 or depth * ms / 1000 <= COVER_S


def test_one_slower_job_makes_the_lookahead_shallow_at_once_and_a_long_one_stops_it() -> None:
    inst = _instance(run=0.002)
    assert lookahead_mcpu(inst, NOW) == MAX_DEPTH * 2000
    inst.lookahead.ran(0.3)  # still short, but the typical run moves towards it
    assert lookahead_mcpu(inst, NOW) == 2000
    for _ in range(30):
        inst.lookahead.ran(0.002)
    assert lookahead_mcpu(inst, NOW) == MAX_DEPTH * 2000  # deep again once the runs are short again
    inst.lookahead.ran(SHORT_RUN_S)
    for _ in range(SHORT_RUNS_NEEDED):
        inst.lookahead.ran(0.1)
    assert lookahead_mcpu(inst, NOW) == 2000  # after a long run, the old short ones count no more


def test_no_lookahead_without_the_workers_word_or_enough_short_runs() -> None:
    assert lookahead_mcpu(_instance(queues=False), NOW) == 0
    assert lookahead_mcpu(_instance(short_runs=SHORT_RUNS_NEEDED - 1), NOW) == 0
    inst = _instance()
    inst.lookahead.ran(SHORT_RUN_S + 0.1)  # one long job: the count starts again
    assert lookahead_mcpu(inst, NOW) == 0


def test_no_lookahead_behind_a_job_that_has_run_or_waited_long() -> None:
    inst = _instance()
    _flight(inst, 1, NOW - 10, NOW - SHORT_RUN_S - 0.1)
    assert lookahead_mcpu(inst, NOW) == 0
    inst = _instance()
    _flight(inst, 2, NOW - SHORT_RUN_S - 0.1)  # handed over long ago and not started (held?)
    assert lookahead_mcpu(inst, NOW) == 0


def test_no_lookahead_on_gpu_or_job_private_instances() -> None:
    inst = _instance()
    inst.gpus = 1
    assert lookahead_mcpu(inst, NOW) == 0
    inst = _instance()
    inst.reserved_for = (1, 1)
    assert lookahead_mcpu(inst, NOW) == 0


def test_a_give_back_pauses_lookahead_on_that_instance() -> None:
    inst = _instance()
    inst.lookahead.gave_back(NOW)
    for _ in range(SHORT_RUNS_NEEDED):
        inst.lookahead.ran(0.1)
    assert lookahead_mcpu(inst, NOW + PAUSE_AFTER_RETURN - 1) == 0
    assert lookahead_mcpu(inst, NOW + PAUSE_AFTER_RETURN + 1) == 2000


def test_a_given_back_attempt_is_retried_whatever_the_count_and_does_not_count() -> None:
    assert after_lost_attempt(3, RETURNED, 3, 1).job_state is JobState.READY
    assert after_lost_attempt(3, "lost", 1, 2).job_state is JobState.READY  # 3 made, 2 given back: 1 counted
    decision = after_lost_attempt(3, "lost", 2, 2)
    assert decision.job_state is JobState.ERROR and "n_max_attempts=2" in (decision.error or "")


def _held(key: int, cores_mcpu: int, since: float = 0.0) -> Held:
    spec = JobSpec(command=["true"])
    return Held(Assignment(f"1.{key}.1", 1, key, 1, spec, cores_mcpu, 1 << 20), asyncio.Event(), since)


def test_admission_starts_what_fits_holds_the_rest_in_order_and_starts_it_as_cores_free() -> None:
    adm = Admission(1000)
    a, b, c, d = _held(1, 500), _held(2, 500), _held(3, 750), _held(4, 250)
    assert adm.offer(a) and adm.offer(b)
    assert not adm.offer(c) and not adm.offer(d)  # d would fit after c, but waits behind it (FIFO)
    assert adm.used_mcpu == 1000
    assert adm.ended(a.assignment) == []  # 500 free: c (750) does not fit yet, and d stays behind it
    assert adm.ended(b.assignment) == [c, d]
    assert adm.used_mcpu == 1000 and not adm.held


def test_admission_runs_a_job_bigger_than_the_worker_once_it_is_idle() -> None:
    adm = Admission(1000)
    small, big = _held(1, 250), _held(2, 4000)
    assert adm.offer(small) and not adm.offer(big)
    assert adm.ended(small.assignment) == [big]


def test_admission_gives_back_what_waited_too_long_and_what_is_taken() -> None:
    adm = Admission(250, give_back_after=2.0)
    running, old = _held(1, 250), _held(2, 250, 10.0)
    young, cancelled = _held(3, 250, 11.5), _held(4, 250, 11.6)
    assert adm.offer(running)
    for held in (old, young, cancelled):
        assert not adm.offer(held)
    assert adm.take(cancelled.assignment.key) is cancelled and adm.take("9.9.9") is None
    assert adm.overdue(12.5) == [old]
    assert list(adm.held) == [young]
    assert adm.take_all() == [young] and not adm.held
