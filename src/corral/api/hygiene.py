"""Refuse text no store can keep, before any route sees it: NUL characters and lone UTF-16 surrogates in
the path, the query or a JSON body are a 400 naming where they are (PostgreSQL cannot store them; SQLite
would, so without this the two stores would accept different inputs)."""

from __future__ import annotations

import json
import re
from urllib.parse import unquote_to_bytes

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# A \\u escape for NUL or a surrogate (the context decides whether it is escaped or paired).
_CANDIDATE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})")
_HIGH = re.compile(rb"\\u[dD][89abAB][0-9a-fA-F]{2}")
_LOW = re.compile(rb"\\u[dD][c-fC-F][0-9a-fA-F]{2}")
WORKER_PREFIX = "/api/v1/worker/"
_OVERLAP = 64  # bytes of the previous chunk kept, so an escape cut between chunks is still seen


class UnstorableText(HTTPException):
    """An HTTPException so FastAPI's body reader lets it through."""

    def __init__(self, where: str, problem: str) -> None:
        super().__init__(400, f"{where}: contains {problem}, which cannot be stored; remove it")
        self.field = where
        self.problem = problem


def _escaped(data: bytes, start: int) -> bool:
    """Whether the backslash at `start` is itself escaped (an odd run of backslashes before it)."""
    run = 0
    while start - run - 1 >= 0 and data[start - run - 1] == 0x5C:
        run += 1
    return run % 2 == 1


def bad_json_text(data: bytes) -> str | None:
    """'a NUL character' or 'a lone surrogate' if the JSON text escapes one, else None."""
    if b"\\u" not in data:
        return None
    for match in _CANDIDATE.finditer(data):
        start = match.start()
        if _escaped(data, start):
            continue
        if match.group() == b"\\u0000":
            return "a NUL character (\\u0000)"
        if _HIGH.match(data, start):
            if not _LOW.match(data, start + 6):
                return "a lone UTF-16 surrogate"
        elif not (start >= 6 and _HIGH.match(data, start - 6) and not _escaped(data, start - 6)):
            return "a lone UTF-16 surrogate"
    return None


def bad_text(raw: bytes) -> str | None:
    """For percent-encoded text (path, query): a NUL, or bytes that are not UTF-8 (surrogates included)."""
    decoded = unquote_to_bytes(raw.replace(b"+", b" "))
    if b"\x00" in decoded:
        return "a NUL character"
    try:
        decoded.decode("utf-8")
    except UnicodeDecodeError:
        return "bytes that are not UTF-8 text"
    return None


class TextHygiene:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        raw_path = scope.get("raw_path") or scope["path"].encode("utf-8", "surrogatepass")
        problem = bad_text(raw_path) or ("a NUL character" if "\x00" in scope["path"] else None)
        if problem:
            await _reject(send, "path", problem)
            return
        problem = bad_text(scope.get("query_string", b""))
        if problem:
            await _reject(send, "query", problem)
            return
        headers = dict(scope.get("headers", []))
        if b"json" not in headers.get(b"content-type", b"") or scope["path"].startswith(WORKER_PREFIX):
            # Workers report what jobs printed: the protocol module cleans such text instead of refusing
            # the report (a refused report would be retried forever).
            await self.app(scope, receive, send)
            return
        tail = b""
        started = False

        async def checking_receive() -> Message:
            nonlocal tail
            message = await receive()
            if message["type"] == "http.request":
                chunk = message.get("body", b"")
                problem = bad_json_text(tail + chunk)
                if problem:
                    raise UnstorableText("body", problem)
                tail = (tail + chunk)[-_OVERLAP:]
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, checking_receive, tracking_send)
        except UnstorableText as exc:
            if not started:
                await _reject(send, exc.field, exc.problem)


async def _reject(send: Send, where: str, problem: str) -> None:
    message = f"{where}: contains {problem}, which cannot be stored; remove it"
    body = json.dumps({"error": "InvalidInput", "message": message, "field": where}).encode()
    await send({
        "type": "http.response.start",
        "status": 400,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
    })
    await send({"type": "http.response.body", "body": body})
