"""One exception root for Corral; the API maps each subclass to an HTTP status in one place."""

from __future__ import annotations


class CorralError(Exception):
    """Root of every error Corral raises on purpose."""

    status_code = 500

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field


class InvalidInput(CorralError):
    """The caller sent something that cannot be accepted; the message says what to change."""

    status_code = 400


class Unauthenticated(CorralError):
    status_code = 401


class Forbidden(CorralError):
    status_code = 403


class NotFound(CorralError):
    status_code = 404


class Conflict(CorralError):
    status_code = 409


class PayloadTooLarge(CorralError):
    status_code = 413


class IllegalTransition(CorralError):
    """A state change that the transition table does not allow."""

    status_code = 409


class ConfigError(CorralError):
    """The configuration (TOML file, CORRAL_* variables or options) is wrong; the message names the key."""

    status_code = 400
