"""What a stock hailtop client needs to find and trust the server: DIR/deploy-config.json,
DIR/tokens.json and DIR/ca.pem (set HAIL_DEPLOY_CONFIG_FILE, HAIL_TOKENS_FILE and SSL_CERT_FILE)."""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from corral.api.bootstrap import DEFAULT_BILLING_PROJECT, ensure_user
from corral.config import Settings
from corral.hail.tls import TlsFiles
from corral.store import users as user_store

NAMESPACE = "default"
# `*.localhost` does not resolve everywhere, so the client is sent to https://localhost:PORT/hail/batch
# (a deploy config with a base_path) rather than to https://batch.localhost:PORT.
BASE_PATH = "/hail"
ROUTE_PREFIX = BASE_PATH + "/batch"


def hail_user_name(settings: Settings) -> str:
    return settings.hail_user or settings.default_user


def _previous_token(compat_dir: Path) -> str | None:
    try:
        data = json.loads((compat_dir / "tokens.json").read_text())
    except (OSError, ValueError):
        return None
    token = data.get(NAMESPACE) if isinstance(data, dict) else None
    return token if isinstance(token, str) else None


async def hail_user_token(engine: AsyncEngine, settings: Settings, bootstrap_tokens: dict[str, str]) -> str:
    """The Hail user's token (the bootstrap's when it is the default user), a member of "default"."""
    name = hail_user_name(settings)
    if name == bootstrap_tokens.get("user"):
        return bootstrap_tokens["token"]
    if name == settings.admin_user:
        return bootstrap_tokens["admin_token"]
    async with engine.begin() as conn:
        token = await ensure_user(
            conn, name, _previous_token(settings.hail_compat_dir or Path()), is_admin=False, now=time.time()
        )
        await user_store.add_billing_project_user(conn, DEFAULT_BILLING_PROJECT, name)
    return token


def _write(path: Path, text: str, mode: int) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    os.chmod(tmp, mode)
    tmp.replace(path)


def write_compat_dir(compat_dir: Path, *, port: int, token: str, tls: TlsFiles) -> None:
    compat_dir.mkdir(parents=True, exist_ok=True)
    deploy = {
        "location": "external",
        "default_namespace": NAMESPACE,
        "domain": f"localhost:{port}",
        "base_path": BASE_PATH,
    }
    _write(compat_dir / "deploy-config.json", json.dumps(deploy, indent=2), 0o644)
    _write(compat_dir / "tokens.json", json.dumps({NAMESPACE: token}), 0o600)
    shutil.copyfile(tls.ca_cert, compat_dir / "ca.pem")
