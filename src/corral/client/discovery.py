"""Where the server is and which token to use: arguments, then CORRAL_URL / CORRAL_TOKEN, then the
local server's files under $CORRAL_HOME (server.url written by `corral server`, tokens.json)."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.client.errors import NoServer
from corral.errors import CorralError
from corral.home import default_home

URL_FILE_NAME = "server.url"
DEFAULT_URL = "http://127.0.0.1:8642"


class NotConfigured(CorralError):
    """No server URL or token could be found; the message says how to give one."""

    status_code = 400


def url_file(home: Path | None = None) -> Path:
    return (home or default_home()) / URL_FILE_NAME


def tokens_file(home: Path | None = None) -> Path:
    return (home or default_home()) / "tokens.json"


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def read_url_file(path: Path) -> str | None:
    url = _read_json(path).get("url")
    return url if isinstance(url, str) and url else None


def resolve_url(url: str | None = None, *, home: Path | None = None) -> str:
    """The server URL: `url`, else $CORRAL_URL, else the local server's url file, else the default port."""
    found = url or os.environ.get("CORRAL_URL") or read_url_file(url_file(home))
    return (found or DEFAULT_URL).rstrip("/")


@dataclass(frozen=True)
class ServerLocation:
    """Where the CLI sends requests, and what to tell the user if nothing answers there."""

    url: str
    hint: str | None = None


def locate_server(url: str | None = None, *, home: Path | None = None) -> ServerLocation:
    """`url`, else $CORRAL_URL, else the server running for $CORRAL_HOME (its url file), else one on the
    default port; when none of these exists, NoServer says how to start one."""
    if url:
        return ServerLocation(url.rstrip("/"))
    if os.environ.get("CORRAL_URL"):
        return ServerLocation(os.environ["CORRAL_URL"].rstrip("/"), "the URL comes from $CORRAL_URL")
    home = home or default_home()
    found = read_url_file(url_file(home))
    if found:
        return ServerLocation(
            found.rstrip("/"),
            f"the server of {home} (from {url_file(home)}) may have stopped: start it with `corral server`",
        )
    from corral.client.local_server import healthy

    if healthy(DEFAULT_URL, timeout=1.0):
        return ServerLocation(DEFAULT_URL)
    raise NoServer(
        f"no Corral server is running for {home} (no {url_file(home)}): start one with `corral server` "
        "in another terminal (your batches are kept in its store), or name a remote one with --url or "
        "CORRAL_URL"
    )


def read_tokens(home: Path | None = None) -> dict[str, str]:
    """tokens.json of a local server: {"admin_token", "user", "token"} ({} when absent)."""
    return {k: v for k, v in _read_json(tokens_file(home)).items() if isinstance(v, str)}


def resolve_token(token: str | None = None, *, home: Path | None = None, admin: bool = False) -> str:
    """The API token: `token`, else $CORRAL_TOKEN (admin: $CORRAL_ADMIN_TOKEN first), else tokens.json's
    user (or admin) token."""
    if token:
        return token
    names = ["CORRAL_ADMIN_TOKEN", "CORRAL_TOKEN"] if admin else ["CORRAL_TOKEN"]
    for name in names:
        if os.environ.get(name):
            return os.environ[name]
    path = tokens_file(home)
    value = _read_json(path).get("admin_token" if admin else "token")
    if isinstance(value, str) and value:
        return value
    raise NotConfigured(
        f"no Corral token: pass --token, set CORRAL_TOKEN, or start a local server (`corral server`) "
        f"so that {path} exists"
    )
