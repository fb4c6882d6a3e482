"""Who is looking at a page: the session cookie (set by /ui/login) or the API's Bearer header; CSRF."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import Request

from corral.api.auth import current_user
from corral.api.context import ApiContext
from corral.errors import CorralError, Forbidden, Unauthenticated
from corral.store.users import User

COOKIE = "corral_session"
COOKIE_MAX_AGE = 30 * 24 * 3600


class LoginRequired(CorralError):
    """No valid session: pages send the browser to the login page."""

    status_code = 401


def session_token(request: Request) -> tuple[str | None, bool]:
    """(token, from_cookie): the Bearer header wins over the cookie."""
    header = request.headers.get("authorization")
    if header and header.lower().startswith("bearer "):
        return header.split(" ", 1)[1].strip(), False
    cookie = request.cookies.get(COOKIE)
    return (cookie, True) if cookie else (None, False)


def csrf_for(token: str) -> str:
    """The session's CSRF token: derived from the session token, which a third-party page cannot read."""
    return hmac.new(token.encode(), b"corral-ui-csrf", hashlib.sha256).hexdigest()[:40]


async def page_user(request: Request, ctx: ApiContext) -> User:
    token, from_cookie = session_token(request)
    if not token:
        raise LoginRequired("log in to see this page")
    try:
        user = await current_user(ctx, f"Bearer {token}")
    except Unauthenticated:
        raise LoginRequired("your session is no longer valid; log in again") from None
    request.state.ui = {
        "user": user,
        "csrf": csrf_for(token) if from_cookie else "",
        "from_cookie": from_cookie,
    }
    return user


async def form_fields(request: Request) -> dict[str, str]:
    """An urlencoded form body (the pages post no files), last value of each field."""
    body = (await request.body()).decode("utf-8", errors="replace")
    return {k: v[-1] for k, v in parse_qs(body, keep_blank_values=True).items()}


async def check_csrf(request: Request) -> dict[str, str]:
    """Every action a page posts carries the session's CSRF token (form field or X-CSRF-Token header);
    Bearer-header callers need none (a browser never adds that header on its own)."""
    fields = await form_fields(request)
    ui: dict[str, Any] = getattr(request.state, "ui", {})
    if not ui.get("from_cookie"):
        return fields
    sent = fields.get("csrf") or request.headers.get("x-csrf-token") or ""
    if not hmac.compare_digest(sent, str(ui.get("csrf", ""))):
        raise Forbidden(
            "csrf: this form is stale or was not sent by Corral's page; reload and retry", field="csrf"
        )
    return fields


def login_url(next_path: str) -> str:
    return f"/ui/login?next={quote(next_path, safe='/')}"


def safe_next(value: str | None) -> str:
    """Only paths under /ui: a login link must not send the user to another site."""
    if value and value.startswith("/ui") and not value.startswith("//"):
        return value
    return "/ui/batches"


def is_loopback(host: str | None) -> bool:
    try:
        return host is not None and ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def local_user_token(ctx: ApiContext, request: Request) -> str | None:
    """On the embedded default (server bound to loopback, SQLite store in its home, browser on this
    machine), the local user's token from tokens.json: opening the page is logging in."""
    settings = ctx.settings
    if settings.database_url is not None or not is_loopback(settings.host):
        return None
    if not is_loopback(request.client.host if request.client else None):
        return None
    try:
        token = json.loads(settings.tokens_file.read_text()).get("token")
    except (OSError, ValueError, AttributeError):
        return None
    return token if isinstance(token, str) and token else None
