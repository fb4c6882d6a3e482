"""The pages' router: errors become HTML pages, a missing session becomes the login page."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute

from corral.errors import CorralError
from corral.ui.auth import LoginRequired, login_url
from corral.ui.render import page

# Scripts only from /ui/static (no inline script, no eval'd handlers), never framed (clickjacking).
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class UiRoute(APIRoute):
    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def ui_handler(request: Request) -> Response:
            response = await _handle(request)
            response.headers.update(SECURITY_HEADERS)
            return response

        async def _handle(request: Request) -> Response:
            try:
                return await handler(request)
            except LoginRequired:
                target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
                if request.headers.get("hx-request"):
                    return Response(status_code=401, headers={"HX-Redirect": login_url(target)})
                return RedirectResponse(login_url(target), status_code=303)
            except CorralError as exc:
                return page(request, "error.html", status_code=exc.status_code, error=exc.message)

        return ui_handler
