"""Errors the client raises (light: the CLI classifies them without importing httpx)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from corral.errors import (
    Conflict,
    CorralError,
    Forbidden,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    Unauthenticated,
)

if TYPE_CHECKING:
    import httpx

RETRY_STATUSES = frozenset({502, 503, 504})  # the server (or a proxy) is restarting: try again
_ERRORS: dict[int, type[CorralError]] = {
    400: InvalidInput,
    401: Unauthenticated,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    422: InvalidInput,
}


class ServerUnreachable(CorralError):
    """The server did not answer (connection refused, timeouts, 502/503/504) after every retry."""

    status_code = 503


class ServerError(CorralError):
    """The server answered with an unexpected error (5xx); the message carries what it said."""


class NoServer(ServerUnreachable):
    """No server runs for this CORRAL_HOME; the message says how to start one."""


class WaitTimeout(CorralError, TimeoutError):
    """A wait for a batch gave up before the batch completed (the batch keeps running)."""

    status_code = 408

    def __init__(self, message: str, *, batch_id: int) -> None:
        super().__init__(message)
        self.batch_id = batch_id


class BatchFailed(CorralError):
    """A batch completed but not every job succeeded; the message is a summary of what went wrong."""

    status_code = 409

    def __init__(self, message: str, *, batch_id: int, status: dict[str, object]) -> None:
        super().__init__(message)
        self.batch_id = batch_id
        self.status = status


def error_from_response(response: httpx.Response) -> CorralError:
    """The Corral error an error response stands for, with the server's message."""
    message, field = "", None
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        message = str(body.get("message") or body.get("detail") or "")
        field = body.get("field") if isinstance(body.get("field"), str) else None
    if not message:
        message = response.text.strip()[:500] or response.reason_phrase
    cls = _ERRORS.get(response.status_code)
    if cls is None:
        cls = InvalidInput if 400 <= response.status_code < 500 else ServerError
        message = f"HTTP {response.status_code}: {message}"
    error = cls(message, field=field)
    error.status_code = response.status_code
    return error
