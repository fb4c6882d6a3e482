"""The worker's calls to the driver sort every answer into go on / retry later / give up / stop, against a
tiny real HTTP server: what the worker does next depends on the class, never on a traceback."""

from __future__ import annotations

import asyncio
import socket
from typing import Any, ClassVar

import pytest
from tests.unit.json_http import JsonHandler, serving

from corral.worker.client import DriverClient, DriverUnavailable, Rejected, Unauthorized


class _Driver(JsonHandler):
    """Answers by path; records what it was sent."""

    seen: ClassVar[list[tuple[str, str, str | None, bytes]]] = []

    def _record(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        self.seen.append((self.command, self.path, self.headers.get("Authorization"), body))
        self.seen.append(("content-type", self.path, self.headers.get("Content-Type"), b""))

    def do_POST(self) -> None:
        self._record()
        path = self.path.removeprefix("/api/v1/worker")
        if path == "/events":
            self.reply(200, {"ack": ["1.2.1"], "assign": []})
        elif path == "/activate":
            self.reply(401, {"detail": "unknown token"})
        elif path == "/poll":
            self.reply(503, {"detail": "restarting"})
        elif path == "/deactivate":
            body = b"<html>proxy error</html>"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.reply(422, {"detail": [{"loc": ["body", "events"], "msg": "bad"}]})

    def do_PUT(self) -> None:
        self._record()
        self.send_response(204)
        self.end_headers()


@pytest.fixture
def driver() -> Any:
    _Driver.seen = []
    with serving(_Driver) as url:
        yield url


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_each_answer_is_sorted_into_what_the_worker_does_next(driver: str) -> None:
    async def calls() -> dict[str, Any]:
        client = DriverClient(driver + "/", "tok")
        out: dict[str, Any] = {}
        try:
            out["events"] = await client.exchange_events([{"type": "started", "key": "1.2.1", "time": 1.0}],
                                                          ["1.2.1"])
            for name, call in (
                ("activate", lambda: client.activate(1000, 2**30, "0", ["process"])),
                ("poll", lambda: client.poll([], 0.0)),
                ("deactivate", client.deactivate),
                ("other", lambda: client._call("POST", "/nowhere", json={})),
            ):
                try:
                    await call()
                    out[name] = None
                except Exception as exc:  # the class is what the test checks
                    out[name] = exc
            await client.put_log(1, 2, 1, "main", b"line\x00\xff")
        finally:
            await client.aclose()
        return out

    out = _run(calls())
    assert out["events"] == {"ack": ["1.2.1"], "assign": []}
    assert isinstance(out["activate"], Unauthorized) and "unknown token" in out["activate"].message
    assert isinstance(out["poll"], DriverUnavailable) and "503" in out["poll"].message
    assert isinstance(out["deactivate"], DriverUnavailable) and "not JSON" in out["deactivate"].message
    assert isinstance(out["other"], Rejected) and out["other"].status == 422
    assert "events" in out["other"].message
    posts = [s for s in _Driver.seen if s[0] == "POST"]
    assert posts[0][1] == "/api/v1/worker/events" and posts[0][2] == "Bearer tok"
    assert b'"known":["1.2.1"]' in posts[0][3]
    put = [s for s in _Driver.seen if s[0] == "PUT"]
    assert put == [("PUT", "/api/v1/worker/logs/1/2/1/main", "Bearer tok", b"line\x00\xff")]
    types = {path: ctype for kind, path, ctype, _ in _Driver.seen if kind == "content-type"}
    assert types["/api/v1/worker/logs/1/2/1/main"] == "application/octet-stream"
    assert types["/api/v1/worker/events"] == "application/json"


def test_an_unreachable_or_silent_driver_is_retried_later() -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()  # accepts, never answers

    async def calls() -> list[BaseException | None]:
        results: list[BaseException | None] = []
        for url, timeout in ((f"http://127.0.0.1:{port}", None), (
                f"http://127.0.0.1:{listener.getsockname()[1]}", 0.3)):
            client = DriverClient(url, "tok")
            try:
                await client._call("POST", "/poll", json={}, timeout=timeout)
                results.append(None)
            except Exception as exc:
                results.append(exc)
            finally:
                await client.aclose()
        return results

    try:
        refused, silent = _run(calls())
    finally:
        listener.close()
    assert isinstance(refused, DriverUnavailable)
    assert isinstance(silent, DriverUnavailable)
