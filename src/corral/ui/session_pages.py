"""/ui/login and /ui/logout."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from corral.api.auth import current_user
from corral.api.context import Context
from corral.errors import Unauthenticated
from corral.ui.auth import (
    COOKIE,
    COOKIE_MAX_AGE,
    check_csrf,
    form_fields,
    local_user_token,
    page_user,
    safe_next,
)
from corral.ui.render import page
from corral.ui.routing import UiRoute

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)


def _logged_in(request: Request, token: str, target: str) -> Response:
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(
        COOKIE,
        token,
        max_age=COOKIE_MAX_AGE,
        httponly=True,
        samesite="strict",
        path="/ui",
        secure=request.url.scheme == "https",
    )
    return response


@router.get("/login", response_class=HTMLResponse)
async def login_form(
    request: Request, ctx: Context, next: str | None = None, logged_out: bool = False
) -> Response:
    target = safe_next(next)
    token = None if logged_out else local_user_token(ctx, request)
    if token is not None:
        try:
            await current_user(ctx, f"Bearer {token}")
            return _logged_in(request, token, target)
        except Unauthenticated:
            pass
    return page(request, "login.html", next=target, error=None)


@router.post("/login", response_class=HTMLResponse)
async def login(request: Request, ctx: Context) -> Response:
    fields = await form_fields(request)
    token = fields.get("token", "").strip()
    target = safe_next(fields.get("next"))
    try:
        if not token:
            raise Unauthenticated("token: paste your token (tokens.json, or ask an admin)", field="token")
        await current_user(ctx, f"Bearer {token}")
    except Unauthenticated as exc:
        message = exc.message if fields.get("token") is not None and not token else "token: unknown token"
        return page(request, "login.html", status_code=401, next=target, error=message)
    return _logged_in(request, token, target)


@router.post("/logout")
async def logout(request: Request, ctx: Context) -> Response:
    await page_user(request, ctx)
    await check_csrf(request)
    response = RedirectResponse("/ui/login?logged_out=1", status_code=303)
    response.delete_cookie(COOKIE, path="/ui")
    return response
