"""The one place where errors become HTTP responses: {"error", "message", "field"}."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError
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

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def store_busy(_request: Request, exc: Exception) -> JSONResponse:
        # SQLite's "database is locked" after busy_timeout, or PostgreSQL out of reach: nothing was
        # written (the transaction rolled back); the client may simply retry.
        log.warning("store busy or unreachable, answered 503: %s", str(exc).splitlines()[0][:200])
        response = error_response(
            503, "StoreBusy", "the store is busy; nothing was changed: retry in a moment", None
        )
        response.headers["Retry-After"] = "1"
        return response

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
        name = _STATUS_NAMES.get(exc.status_code, "HTTPError")
        response = error_response(exc.status_code, name, str(exc.detail), getattr(exc, "field", None))
        for header, value in (exc.headers or {}).items():  # e.g. Allow on a 405
            response.headers[header] = value
        return response


_ERROR_SCHEMA = {
    "title": "Error",
    "type": "object",
    "required": ["error", "message", "field"],
    "properties": {
        "error": {"type": "string", "description": "the kind of error, e.g. InvalidInput"},
        "message": {"type": "string", "description": "what is wrong and what to change"},
        "field": {"anyOf": [{"type": "string"}, {"type": "null"}], "description": "the input at fault"},
    },
}
_ERROR_STATUSES = {
    "400": "Invalid input: the message names the field and what to change",
    "401": "No token, or an unknown one",
    "403": "The token's user may not do this",
    "404": "No such resource (or not visible to this user)",
    "405": "The path exists, not with this method (see the Allow header)",
    "409": "The resource is in a state that does not allow this",
    "413": "The request body is too large",
    "503": "The store is busy; retry after the Retry-After header's seconds",
}


def document_errors(app: FastAPI) -> None:
    """Every operation documents the error statuses the API answers with (one body shape for all),
    instead of FastAPI's 422, which this API never sends (validation errors are 400s)."""
    original = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = original()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas["Error"] = _ERROR_SCHEMA
        for name in ("HTTPValidationError", "ValidationError"):
            schemas.pop(name, None)
        error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        for item in schema.get("paths", {}).values():
            for operation in item.values():
                if not isinstance(operation, dict) or "responses" not in operation:
                    continue
                responses = operation["responses"]
                responses.pop("422", None)
                for status, description in _ERROR_STATUSES.items():
                    responses.setdefault(status, {"description": description, **error})
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
