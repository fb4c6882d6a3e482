"""The agent's bookkeeping: which attempts are known, which events still await an acknowledgement."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from corral.runtimes.base import MainRequest, MainResult
from corral.runtimes.noop import NoopRuntime
from corral.worker.agent import Agent
from corral.worker.ledger import AttemptLedger
from corral.worker.outbox import EventOutbox


def test_an_attempt_is_known_from_assignment_until_its_completion_is_acked() -> None:
    ledger = AttemptLedger()
    assert ledger.accept("1.1.1") is not None
    assert ledger.known() == ["1.1.1"]
    ledger.finished("1.1.1")
    assert ledger.known() == ["1.1.1"]  # finished but not acknowledged: still known
    ledger.acknowledged("1.1.1")
    assert ledger.known() == []


def test_a_repeated_assignment_is_ignored() -> None:
    ledger = AttemptLedger()
    first = ledger.accept("1.1.1")
    assert first is not None
    assert ledger.accept("1.1.1") is None
    ledger.finished("1.1.1")
    assert ledger.accept("1.1.1") is None  # finished, unacked: still handled here


def test_cancel_reaches_only_running_attempts() -> None:
    ledger = AttemptLedger()
    switch = ledger.accept("1.1.1")
    assert switch is not None
    assert ledger.cancel("9.9.9") is False
    assert ledger.cancel("1.1.1") is True and switch.is_set()
    ledger.finished("1.1.1")
    assert ledger.cancel("1.1.1") is False


def _started(key: str) -> dict[str, Any]:
    return {"type": "started", "key": key, "time": 1.0}


def _completed(key: str) -> dict[str, Any]:
    return {"type": "completed", "key": key, "time": 2.0, "state": "succeeded"}


def test_acknowledged_events_leave_the_outbox_and_completions_are_reported() -> None:
    box = EventOutbox()
    box.put(_started("1.1.1"))
    box.put(_completed("1.1.1"))
    box.put(_started("1.2.1"))
    batch = box.batch()
    assert len(batch) == 3
    acked_completions = box.settle(batch, ["1.1.1", "1.2.1"])
    assert acked_completions == ["1.1.1"]
    assert len(box) == 0


def test_unacknowledged_events_stay_and_are_sent_again() -> None:
    box = EventOutbox()
    box.put(_completed("1.1.1"))
    box.put(_completed("1.2.1"))
    sent = box.batch()
    assert box.settle(sent, ["1.2.1"]) == ["1.2.1"]
    assert box.batch() == [_completed("1.1.1")]


def test_events_added_while_a_batch_is_in_flight_are_kept() -> None:
    box = EventOutbox()
    box.put(_started("1.1.1"))
    in_flight = box.batch()
    box.put(_completed("1.1.1"))  # arrives during the request; same key
    assert box.settle(in_flight, ["1.1.1"]) == []
    assert box.batch() == [_completed("1.1.1")]


def test_an_attempts_events_never_ride_in_two_posts_at_once() -> None:
    box = EventOutbox()
    box.put(_started("1.1.1"))
    first = box.take()
    assert first == [_started("1.1.1")] and box.in_flight == 1
    box.put(_completed("1.1.1"))
    box.put(_completed("1.2.1"))
    second = box.take()  # another post may go now, but not with 1.1.1's end: it would overtake its start
    assert second == [_completed("1.2.1")]
    assert box.take() == []
    assert box.settle(second, ["1.2.1"]) == ["1.2.1"]
    box.release(first)  # the first post failed: its start goes again, still ahead of the end
    assert box.take() == [_started("1.1.1"), _completed("1.1.1")]


def test_batches_are_bounded() -> None:
    box = EventOutbox()
    for i in range(25):
        box.put(_started(f"1.{i}.1"))
    assert len(box.batch(10)) == 10
    assert box.batch(10)[0]["key"] == "1.0.1"


async def test_waiting_for_events_and_for_an_empty_outbox() -> None:
    box = EventOutbox()
    assert await box.wait_for_events(timeout=0.01) is False
    waiter = asyncio.create_task(box.wait_for_events())
    await asyncio.sleep(0)
    box.put(_started("1.1.1"))
    assert await asyncio.wait_for(waiter, 1) is True
    empty = asyncio.create_task(box.wait_empty())
    await asyncio.sleep(0.01)
    assert not empty.done()
    box.settle(box.batch(), ["1.1.1"])
    await asyncio.wait_for(empty, 1)


def _assignment(key: str, **overrides: Any) -> dict[str, Any]:
    batch, job, attempt = (int(p) for p in key.split("."))
    raw: dict[str, Any] = {
        "key": key, "batch_id": batch, "job_id": job, "attempt_id": attempt,
        "spec": {"command": ["true"], "runtime": "noop"}, "cores_mcpu": 1000, "memory_bytes": 1 << 20,
    }
    raw.update(overrides)
    return raw


async def _closed(agent: Agent) -> None:
    """Cancel the agent's attempts, wait for them, close its client."""
    for task in agent._attempts.values():
        task.cancel()
    await asyncio.gather(*agent._attempts.values(), return_exceptions=True)
    await agent.client.aclose()


async def test_agent_runs_each_assignment_once_and_knows_it(tmp_path: Path) -> None:
    agent = Agent("http://127.0.0.1:9", "unit", "token", runtime="noop", work_dir=tmp_path)
    from corral.runtimes import runtime_class

    agent.runtime = runtime_class("noop")(instance_name="unit", work_dir=tmp_path)
    try:
        agent.handle_poll({"assign": [_assignment("3.1.1"), _assignment("3.2.1")], "cancel": []})
        agent.handle_poll({"assign": [_assignment("3.1.1")], "cancel": ["8.8.8"]})
        assert sorted(agent._attempts) == ["3.1.1", "3.2.1"]
        assert sorted(agent.ledger.known()) == ["3.1.1", "3.2.1"]
    finally:
        await _closed(agent)


async def test_agent_reports_an_unreadable_assignment_as_an_error(tmp_path: Path) -> None:
    agent = Agent("http://127.0.0.1:9", "unit", "token", runtime="noop", work_dir=tmp_path)
    try:
        agent.handle_poll({"assign": [_assignment("3.3.1", spec={"command": "not a list"})], "cancel": []})
        assert agent._attempts == {}
        [event] = agent.outbox.batch()
        assert event["type"] == "completed" and event["key"] == "3.3.1" and event["state"] == "error"
        assert "command" in event["error"]
        assert agent.ledger.known() == ["3.3.1"]  # known until the driver acknowledges it
        for key in agent.outbox.settle(agent.outbox.batch(), ["3.3.1"]):
            agent.ledger.acknowledged(key)
        assert agent.ledger.known() == []
    finally:
        await agent.client.aclose()


def test_agent_defaults_to_the_machines_resources(tmp_path: Path) -> None:
    agent = Agent("http://127.0.0.1:9", "unit", "token", work_dir=tmp_path)
    assert agent.cores_mcpu >= 1000 and agent.memory_bytes > 0
    sized = Agent("http://127.0.0.1:9", "unit", "token", cores=0.5, memory_bytes=123, work_dir=tmp_path)
    assert sized.cores_mcpu == 500 and sized.memory_bytes == 123


def test_a_late_duplicate_of_an_acknowledged_attempt_is_never_run_again() -> None:
    ledger = AttemptLedger()
    assert ledger.accept("1.1.1") is not None
    ledger.finished("1.1.1")
    ledger.acknowledged("1.1.1")
    assert ledger.known() == []
    assert ledger.accept("1.1.1") is None  # e.g. a poll reply that crossed the events reply on the wire
    assert ledger.accept("1.1.2") is not None  # a new attempt of the same job is new work


async def test_a_lone_started_event_waits_for_the_completion_to_go_with_it() -> None:
    box = EventOutbox(frozenset({"started"}), lazy_window=60)
    box.put(_started("1.1.1"))
    assert box.batch() == []  # held: a short job's start goes with its end
    waiting = asyncio.create_task(box.wait_for_events())
    await asyncio.sleep(0)
    assert not waiting.done()
    box.put(_completed("1.1.1"))  # the attempt ended: both go in one post
    assert await asyncio.wait_for(waiting, 10) is True
    assert [e["type"] for e in box.take()] == ["started", "completed"]
    box.put(_started("2.1.1"))
    box.put(_completed("3.1.1"))
    assert box.take() == [_completed("3.1.1")]  # another attempt's end does not carry a young start along
    alone = EventOutbox(frozenset({"started"}), lazy_window=0.01)
    alone.put(_started("4.1.1"))
    assert await asyncio.wait_for(alone.wait_for_events(), 10) is True  # a longer job: sent after the window
    assert alone.take() == [_started("4.1.1")]


def test_a_start_on_the_wire_is_resent_at_once_if_its_post_fails() -> None:
    box = EventOutbox(frozenset({"started"}), lazy_window=60)
    box.put(_started("1.1.1"))
    box.put(_completed("1.1.1"))
    sent = box.take()
    box.release(sent)
    assert box.take() == sent


class _Gated(NoopRuntime):
    """Jobs that run until the test lets each one end."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.release: dict[str, asyncio.Event] = {}

    async def run(self, request: MainRequest, cancel: asyncio.Event) -> MainResult:
        await self.release.setdefault(request.key, asyncio.Event()).wait()
        return await super().run(request, cancel)


async def _turns(n: int = 50) -> None:
    for _ in range(n):
        await asyncio.sleep(0)


async def test_agent_holds_what_exceeds_its_cores_starts_it_as_cores_free_and_gives_back_the_rest(
    tmp_path: Path,
) -> None:
    agent = Agent("http://127.0.0.1:9", "unit", "token", cores=1.0, runtime="noop", work_dir=tmp_path)
    gated = agent.runtime = _Gated(instance_name="unit", work_dir=tmp_path)
    keys = [f"4.{j}.1" for j in range(1, 6)]
    try:
        agent.handle_poll({"assign": [_assignment(k, cores_mcpu=500) for k in keys], "cancel": []})
        await _turns()
        assert sorted(agent._attempts) == keys[:2]  # one core: two jobs of half a core run, three wait
        assert [h.assignment.key for h in agent.admission.held] == keys[2:]
        assert sorted(agent.ledger.known()) == keys  # held ones are the worker's: the driver resends none
        gated.release.setdefault(keys[0], asyncio.Event()).set()
        await _turns()
        assert sorted(agent._attempts) == [keys[1], keys[2]]  # the first ended: the next in line started
        agent.handle_poll({"cancel": [keys[4]]})  # cancelled while held: given back at once, never run
        agent.admission.give_back_after = 0.0
        giver = asyncio.create_task(agent._give_back_loop())
        await asyncio.sleep(0.4)
        giver.cancel()
        events = agent.outbox.take()
        returned = [e["key"] for e in events if e["type"] == "returned"]
        assert returned == [keys[4], keys[3]]  # the cancelled one, then the one that waited too long
        assert [e["key"] for e in events if e["type"] == "completed"] == [keys[0]]
        assert keys[3] not in agent._attempts and not agent.admission.held
        assert all(e["waited"] >= 0 for e in events if e["type"] == "returned")
    finally:
        await _closed(agent)


async def test_a_worker_stopping_at_once_starts_nothing_it_held(tmp_path: Path) -> None:
    agent = Agent("http://127.0.0.1:9", "unit", "token", cores=0.5, runtime="noop", work_dir=tmp_path)
    gated = agent.runtime = _Gated(instance_name="unit", work_dir=tmp_path)
    keys = ["5.1.1", "5.2.1"]
    try:
        agent.handle_poll({"assign": [_assignment(k, cores_mcpu=500) for k in keys], "cancel": []})
        await _turns()
        assert list(agent._attempts) == keys[:1]
        agent.stopping.set()
        gated.release.setdefault(keys[0], asyncio.Event()).set()
        await _turns()
        assert agent._attempts == {} and agent.admission.used_mcpu == 0
        assert [h.assignment.key for h in agent.admission.held] == keys[1:]  # held, never started
    finally:
        await _closed(agent)
