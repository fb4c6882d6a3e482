"""BatchHandle.wait asks the server to hold its status request until the batch completes
(GET /api/v1/batches/{id}?wait=S), and against a server that answers at once (older Corral) it falls
back to polling with pauses, never to a loop of requests. A tiny real HTTP server plays both."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest
from tests.unit.json_http import JsonHandler, serving

from corral.client import handle
from corral.client.handle import BatchHandle
from corral.client.sync import SyncClient


def _status(complete: bool) -> dict[str, Any]:
    return {
        "id": 1, "user": "alice", "billing_project": "default", "token": "t", "complete": complete,
        "state": "success" if complete else "running", "closed": True, "n_jobs": 1,
        "n_completed": int(complete), "n_succeeded": int(complete), "n_failed": 0, "n_cancelled": 0,
        "time_created": None, "time_closed": None, "time_completed": None, "duration": None,
        "msec_mcpu": 0, "cost": 0.0, "attributes": {},
    }


class _Batch(JsonHandler):
    """Batch 1 completes at its 4th status request; while `holds`, a request asking `wait` is held that
    long (as Corral does when the batch does not complete meanwhile), else answered at once."""

    holds = True
    requests: list[dict[str, list[str]]] = []

    def do_GET(self) -> None:
        query = parse_qs(urlparse(self.path).query)
        self.requests.append(query)
        complete = len(self.requests) >= 4
        if self.holds and not complete and "wait" in query:
            threading.Event().wait(float(query["wait"][0]))  # not time.sleep: the test records those
        self.reply(200, _status(complete))


@pytest.fixture
def server() -> Iterator[str]:
    _Batch.requests = []
    with serving(_Batch) as url:
        yield url


@pytest.fixture
def pauses(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The client's pauses between status requests (recorded, and shortened so the test is quick)."""
    seen: list[float] = []
    monkeypatch.setattr(handle, "WAIT_HIDDEN", 0.2)  # held 0.2 s per request instead of 10
    monkeypatch.setattr(handle.time, "sleep", lambda seconds: seen.append(seconds))
    return seen


def test_the_wait_asks_the_server_to_hold_each_request_and_does_not_pause(
    server: str, pauses: list[float]
) -> None:
    _Batch.holds = True
    with SyncClient(server, "token") as client:
        status = BatchHandle(client, 1).wait(progress=False)
    assert status["complete"]
    assert len(_Batch.requests) == 4
    assert all(q.get("wait") == ["0.2"] for q in _Batch.requests), _Batch.requests
    assert pauses == []  # each incomplete answer came after the time it asked: asked again at once


def test_against_a_server_that_answers_at_once_the_wait_pauses_between_requests(
    server: str, pauses: list[float]
) -> None:
    _Batch.holds = False
    with SyncClient(server, "token") as client:
        status = BatchHandle(client, 1).wait(progress=False)
    assert status["complete"]
    assert len(_Batch.requests) == 4
    assert len(pauses) == 3 and all(p > 0 for p in pauses)  # polling with pauses, not a burst
