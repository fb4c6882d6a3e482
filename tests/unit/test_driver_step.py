"""The driver's tick as a pure step: feed events, read the plan (nothing else changes)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from corral.config import Settings
from corral.domain.attempts import RETURNED
from corral.domain.states import JobState
from corral.driver.driver import Driver
from corral.driver.inbox import ErroredAttempt, Inbox, Report
from corral.driver.instances import AttemptInFlight, InstanceState
from corral.driver.step import plan_tick
from corral.store.db import make_engine
from corral.worker.protocol import CompletedEvent, ReturnedEvent, StartedEvent

NOW = 1_000.0


def _instance(name: str, *keys: tuple[int, int, int]) -> InstanceState:
    inst = InstanceState(name, "default", f"hash-{name}", 4000, 8 << 30)
    inst.cost_per_core_hour = 1.0
    for b, j, a in keys:
        flight = AttemptInFlight(b, j, a, "alice", "default", 1000, 1 << 30, {}, NOW - 100, name)
        inst.assigned[flight.key] = flight
    return inst


def _report(inst: InstanceState, *events: StartedEvent | CompletedEvent) -> Report:
    return Report(inst, list(events), asyncio.get_running_loop().create_future())


def _done(key: str, time: float, state: str = "succeeded") -> CompletedEvent:
    return CompletedEvent(type="completed", key=key, time=time, state=state)  # type: ignore[arg-type]


async def test_a_start_and_a_completion_in_one_report_make_one_outcome_timed_by_the_driver() -> None:
    inst = _instance("w1", (1, 1, 1))
    report = _report(inst, StartedEvent(type="started", key="1.1.1", time=NOW - 50),
                     _done("1.1.1", NOW + 10 * 365 * 86400))
    plan = plan_tick({"w1": inst}, Inbox(reports=[report]), NOW)
    assert [(f.key, t) for f, t in plan.started] == [("1.1.1", NOW - 50)]
    assert plan.start_times == []  # written with its end: the outcome carries it
    (outcome,) = plan.outcomes
    assert outcome.time_started == NOW - 50
    assert outcome.job_state is JobState.SUCCESS and outcome.time_ended == NOW  # clamped: no future
    assert outcome.msec_mcpu == 50 * 1000 * 1000  # 50 s of one core, from the reported start
    assert [f.key for f in plan.released] == ["1.1.1"]
    assert plan.acks == [(report, ["1.1.1", "1.1.1"])]
    assert inst.assigned["1.1.1"].time_started is None  # the step changed nothing


async def test_unknown_and_duplicate_events_are_acknowledged_and_change_nothing() -> None:
    inst = _instance("w1", (1, 1, 1))
    report = _report(inst, _done("9.9.9", NOW), _done("1.1.1", NOW), _done("1.1.1", NOW, "failed"))
    plan = plan_tick({"w1": inst}, Inbox(reports=[report]), NOW)
    assert [o.job_state for o in plan.outcomes] == [JobState.SUCCESS]
    assert len(plan.released) == 1
    assert plan.acks[0][1] == ["9.9.9", "1.1.1", "1.1.1"]


async def test_a_completion_in_the_tick_its_instance_is_lost_is_a_completion_not_a_loss() -> None:
    inst = _instance("w1", (1, 1, 1), (1, 2, 1))
    plan = plan_tick({"w1": inst}, Inbox(reports=[_report(inst, _done("1.1.1", NOW))],
                                         lost={"w1": "no heartbeat"}), NOW)
    by_job = {o.job_id: o for o in plan.outcomes}
    assert by_job[1].job_state is JobState.SUCCESS
    assert by_job[2].job_state is JobState.READY and by_job[2].end_reason == "lost"
    assert sorted(f.key for f in plan.released) == ["1.1.1", "1.2.1"]  # each released once
    assert plan.lost_instances == [inst]


def test_a_cancelled_attempt_is_released_without_an_outcome_and_an_isolated_one_errors() -> None:
    inst = _instance("w1", (1, 1, 1), (1, 2, 1))
    inst.to_cancel.add("1.1.1")
    errored = ErroredAttempt("w1", "1.2.1", "the driver could not apply it")
    plan = plan_tick({"w1": inst}, Inbox(lost={"w1": "gone"}, errored=[errored]), NOW)
    (outcome,) = plan.outcomes
    assert (outcome.job_id, outcome.job_state) == (2, JobState.ERROR)
    assert outcome.status == {"attempt_id": 1, "error": "the driver could not apply it"}
    assert sorted(f.key for f in plan.released) == ["1.1.1", "1.2.1"]


async def test_the_group_commit_waits_for_reports_only_while_another_active_instance_may_send_one(
    tmp_path: Path,
) -> None:
    """Only a tick with reports in gathers more: once every active instance's report is in the inbox,
    waiting `commit_interval` gathers nothing and only delays the replies; and a tick woken by a batch's
    commit (or a cancel) alone runs at once, not `commit_interval` later."""
    engine = make_engine(f"sqlite:///{tmp_path / 'unused.db'}")  # never connected
    driver = Driver(engine, Settings(commit_interval=0.005))
    one, two, idle = _instance("w1"), _instance("w2"), _instance("w3")
    one.active = two.active = True  # w3 never activated: it sends no events
    driver.instances = {"w1": one, "w2": two, "w3": idle}
    driver._inbox.committed.add(7)
    assert not driver._more_reports_may_come()  # a commit alone: its jobs are placed at once
    driver._inbox.reports.append(_report(one))
    assert driver._more_reports_may_come()  # w2 may still report
    driver._inbox.reports.append(_report(two))
    assert not driver._more_reports_may_come()
    two.active = False
    driver._inbox.reports.pop()
    assert not driver._more_reports_may_come()  # the only active instance has reported
    await engine.dispose()


async def test_the_remembered_unplaceable_verdict_follows_the_pools_largest_instance(tmp_path: Path) -> None:
    """The driver remembers why a job shape cannot run in a pool (a committed batch queues 100,000 jobs of
    a few shapes); an instance that joins the pool changes the answer at once, and the memory is bounded."""
    from corral.domain.scheduling import ReadyJob
    from corral.driver import driver as driver_module

    engine = make_engine(f"sqlite:///{tmp_path / 'unused.db'}")  # never connected
    driver = Driver(engine, Settings())
    driver.instances = {"w1": _instance("w1")}  # 4 cores, 8 GiB
    big = ReadyJob(1, 1, "alice", 16_000, 1 << 30, 0)
    small = ReadyJob(1, 2, "alice", 1000, 1 << 30, 0)
    reason = "needs 16 cores and 1 GiB; pool default's largest instance has 4 cores and 8 GiB"
    assert driver._why_unplaceable("default", big) == reason
    assert driver._why_unplaceable("default", big) == reason  # remembered: the same answer
    assert driver._why_unplaceable("default", small) is None
    bigger = InstanceState("w2", "default", "hash-w2", 32_000, 64 << 30)
    driver.instances["w2"] = bigger
    driver._pool_changed("default")
    assert driver._why_unplaceable("default", big) is None
    del driver.instances["w2"]
    driver._pool_changed("default")
    assert driver._why_unplaceable("default", big) == reason
    for cores in range(1, driver_module._MAX_VERDICTS + 10):
        driver._why_unplaceable("default", ReadyJob(1, 3, "alice", cores, 1 << 30, 0))
    assert len(driver._verdicts) <= driver_module._MAX_VERDICTS
    assert driver._why_unplaceable("default", big) == reason
    await engine.dispose()


async def test_an_attempt_given_back_unstarted_is_ready_again_uncharged_and_pauses_lookahead() -> None:
    inst = _instance("w1", (1, 1, 1), (1, 2, 1), (1, 3, 1))
    returned = ReturnedEvent(type="returned", key="1.1.1", time=NOW, waited=2.5)
    report = _report(inst, returned, _done("1.2.1", NOW - 99.8))  # type: ignore[arg-type]
    plan = plan_tick({"w1": inst}, Inbox(reports=[report]), NOW)
    back, done = plan.outcomes
    assert (back.job_state, back.end_reason, back.msec_mcpu) == (JobState.READY, RETURNED, 0)
    assert back.status is not None
    assert "not counted or charged" in back.status["error"] and "2.5s" in back.status["error"]
    assert done.job_state is JobState.SUCCESS
    assert plan.gave_back == [inst]
    assert [(i.name, round(s, 3)) for i, s in plan.runs] == [("w1", 0.2)]  # the completion's run time
    assert sorted(f.key for f in plan.released) == ["1.1.1", "1.2.1"]


async def test_a_cancelled_attempt_coming_back_ends_nothing_more_and_does_not_pause_lookahead() -> None:
    inst = _instance("w1", (1, 1, 1))
    inst.to_cancel.add("1.1.1")  # its cancellation already ended it in the store
    report = _report(inst, ReturnedEvent(type="returned", key="1.1.1", time=NOW))  # type: ignore[arg-type]
    plan = plan_tick({"w1": inst}, Inbox(reports=[report]), NOW)
    assert plan.outcomes == [] and plan.gave_back == []
    assert [f.key for f in plan.released] == ["1.1.1"]


async def test_a_give_back_of_an_attempt_seen_to_start_is_a_counted_loss() -> None:
    inst = _instance("w1", (1, 1, 1))
    started = StartedEvent(type="started", key="1.1.1", time=NOW - 5)
    report = _report(inst, started, ReturnedEvent(type="returned", key="1.1.1", time=NOW))  # type: ignore[arg-type]
    (outcome,) = plan_tick({"w1": inst}, Inbox(reports=[report]), NOW).outcomes
    assert (outcome.job_state, outcome.end_reason) == (JobState.READY, "lost")
    assert outcome.msec_mcpu == 5 * 1000 * 1000  # it ran: its cores are counted
    assert outcome.time_started == NOW - 5


async def test_a_start_heard_without_its_end_is_written_on_its_own() -> None:
    inst = _instance("w1", (1, 1, 1), (1, 2, 1))
    report = _report(inst, StartedEvent(type="started", key="1.1.1", time=NOW - 5),
                     StartedEvent(type="started", key="1.2.1", time=NOW - 4), _done("1.2.1", NOW))
    plan = plan_tick({"w1": inst}, Inbox(reports=[report]), NOW)
    assert plan.start_times == [(1, 1, 1, NOW - 5)]
    assert [(o.job_id, o.time_started) for o in plan.outcomes] == [(2, NOW - 4)]


async def test_queueing_a_committed_batch_at_once_ends_as_queueing_it_job_by_job(tmp_path: Path) -> None:
    """_enqueue_all (a committed batch, a rebuild) decides each shape's route and placeability once and
    pushes per collection; the queues, the parked unplaceable jobs and the doomed set come out as
    _enqueue per job, in order."""
    from corral.domain.scheduling import ReadyJob
    from corral.store.driver_records import QueuedJob

    engine = make_engine(f"sqlite:///{tmp_path / 'unused.db'}")  # never connected
    jobs = []
    for j in range(1, 60):
        user = ("alice", "bob", "carol")[j % 3]
        cores = (16_000 if j % 7 == 0 else 1000 * (1 + j % 2))  # every 7th: larger than any instance
        jobs.append(QueuedJob(ReadyJob(1, j, user, cores, 1 << 30, 0), "default", j % 11 == 0, j % 5 == 0))
    jobs.append(jobs[3])  # queued twice: the queues ignore the repeat
    drivers = []
    for _ in range(2):
        driver = Driver(engine, Settings())
        driver.instances = {"w1": _instance("w1")}  # 4 cores, 8 GiB
        drivers.append(driver)
    one_by_one, at_once = drivers
    for queued in jobs:
        one_by_one._enqueue(queued)
    at_once._enqueue_all(jobs)
    assert at_once._doomed == one_by_one._doomed
    assert at_once._doomed == {(1, j) for j in range(1, 60) if j % 5 == 0 and j % 11 != 0}
    assert at_once.unplaceable._reasons == one_by_one.unplaceable._reasons
    assert set(at_once.unplaceable._reasons) == {(1, j) for j in range(7, 60, 7) if j % 5 or j % 11 == 0}
    assert at_once.queues.keys() == one_by_one.queues.keys() == {"default"}
    mine, theirs = at_once.queues["default"], one_by_one.queues["default"]
    assert len(mine) == len(theirs) > 0
    assert mine.ready_mcpu == theirs.ready_mcpu
    for user in theirs.users():
        assert [j.key for j in mine._by_user[user]] == [j.key for j in theirs._by_user[user]]
    await engine.dispose()
