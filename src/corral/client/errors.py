"""Errors the client raises (light: the CLI classifies them without importing httpx)."""

from __future__ import annotations

from corral.errors import CorralError


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
