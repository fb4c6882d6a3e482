"""The clients' one retry policy (client/retry.py), through the blocking reader the CLI uses."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from tests.unit.json_http import JsonHandler, serving

from corral.client.errors import ServerUnreachable
from corral.client.reader import ReadClient
from corral.errors import NotFound


class _Flaky(JsonHandler):
    """Answers each path's first `fail` GETs with a 503, then 200 (or the path's fixed status)."""

    fail = 2
    seen: dict[str, int] = {}

    def do_GET(self) -> None:
        n = self.seen[self.path] = self.seen.get(self.path, 0) + 1
        status = 404 if self.path.startswith("/api/v1/missing") else (503 if n <= self.fail else 200)
        self.reply(status, {"message": "no such thing"} if status == 404 else {"n": n})


@pytest.fixture
def server() -> Iterator[str]:
    _Flaky.seen = {}
    with serving(_Flaky) as url:
        yield url


def test_503s_are_tried_again_until_an_answer(server: str) -> None:
    with ReadClient(server, None, retries=3, backoff=0.01) as c:
        assert c.get("/thing").json() == {"n": 3}
    assert _Flaky.seen["/api/v1/thing"] == 3


def test_503s_past_the_last_try_and_4xx_at_once_raise(server: str) -> None:
    with ReadClient(server, None, retries=1, backoff=0.01) as c:
        with pytest.raises(ServerUnreachable, match="not available: HTTP 503"):
            c.get("/thing")
        assert _Flaky.seen["/api/v1/thing"] == 2
        with pytest.raises(NotFound, match="no such thing"):
            c.get("/missing")
    assert _Flaky.seen["/api/v1/missing"] == 1  # a 4xx is the answer: never tried again


def test_nobody_listening_is_server_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    with ReadClient(f"http://127.0.0.1:{port}", None, retries=2, backoff=0.01) as c, \
            pytest.raises(ServerUnreachable, match="cannot reach"):
        c.get("/thing")
