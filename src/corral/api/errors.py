"""The one place where errors become HTTP responses: {"error", "message", "field"}."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from corral.errors import CorralError

log = logging.getLogger("corral.api")
_STATUS_NAMES = {
    400: "InvalidInput",
    401: "Unauthenticated",
    403: "Forbidden",
    404: "NotFound",
    405: "MethodNotAllowed",
    409: "Conflict",
    413: "PayloadTooLarge",
}


def error_response(status: int, error: str, message: str, field: str | None = None) -> JSONResponse:
    return JSONResponse({"error": error, "message": message, "field": field}, status_code=status)


def field_path(loc: Sequence[str | int], *, prefix: str = "bunch") -> str:
    """('body', 'bunch', 3, 'resources', 'cpu') -> 'bunch[3].resources.cpu'; a bare list body is a bunch."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    if parts and isinstance(parts[0], int):
        parts.insert(0, prefix)
    out = ""
    for part in parts:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out or "body"


def validation_error_field(error: dict[str, Any], *, prefix: str = "bunch") -> tuple[str, str]:
    """(field, message) for one pydantic error."""
    field = field_path(error.get("loc", ()), prefix=prefix)
    message = str(error.get("msg", "invalid value"))
    if error.get("type") == "missing":
        return field, f"{field}: this field is required"
    if error.get("type") == "json_invalid":
        return "body", f"body: not valid JSON ({error.get('ctx', {}).get('error', message)})"
    return field, f"{field}: {message}"


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(CorralError)
    async def corral_error(_request: Request, exc: CorralError) -> JSONResponse:
        if exc.status_code >= 500:
            log.error("internal error: %s", exc.message)
        return error_response(exc.status_code, type(exc).__name__, exc.message, exc.field)

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = list(exc.errors())
        field, message = validation_error_field(dict(errors[0])) if errors else ("body", "invalid request")
        if len(errors) > 1:
            message += f" (and {len(errors) - 1} more problem(s))"
        return error_response(400, "InvalidInput", message, field)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        name = _STATUS_NAMES.get(exc.status_code, "HTTPError")
        return error_response(exc.status_code, name, str(exc.detail), getattr(exc, "field", None))
