"""The HTTPS listener for the stock hailtop client, next to the plain HTTP one workers use."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from dataclasses import dataclass
from pathlib import Path

import uvicorn
from fastapi import FastAPI
from sqlalchemy.ext.asyncio import AsyncEngine

from corral.config import Settings
from corral.hail.compat_dir import hail_user_name, hail_user_token, write_compat_dir
from corral.hail.tls import ensure_tls

log = logging.getLogger("corral.hail")


@dataclass
class HailListener:
    server: uvicorn.Server
    task: asyncio.Task[None]
    port: int

    async def stop(self) -> None:
        self.server.should_exit = True
        with contextlib.suppress(Exception):
            await self.task


def _bind(host: str, remembered: Path) -> socket.socket:
    """The port used last time if it is free (a client waiting on a batch keeps its deploy config
    across a server restart), else any free port."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(remembered.read_text())))
    except (OSError, ValueError):
        sock.bind((host, 0))
    sock.listen(2048)
    sock.setblocking(False)
    remembered.write_text(str(sock.getsockname()[1]))
    return sock


async def start_hail_listener(
    settings: Settings, app: FastAPI, engine: AsyncEngine, tokens: dict[str, str]
) -> HailListener:
    """Serve `app` over TLS on a free port, then write DIR/{deploy-config.json,tokens.json,ca.pem}."""
    assert settings.hail_compat_dir is not None
    tls = await asyncio.to_thread(ensure_tls, settings.home / "tls")
    token = await hail_user_token(engine, settings, tokens)
    sock = _bind(settings.host, settings.home / "hail.port")
    port = int(sock.getsockname()[1])
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, timeout_keep_alive=30, timeout_graceful_shutdown=10,
        ssl_certfile=str(tls.server_cert), ssl_keyfile=str(tls.server_key),
    )
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not task.done():
        await asyncio.sleep(0.01)
    if task.done():
        await task  # raises the startup error
    write_compat_dir(settings.hail_compat_dir, port=port, token=token, tls=tls)
    log.warning(
        "hail-compatible API on https://localhost:%s (user %s); set HAIL_DEPLOY_CONFIG_FILE, "
        "HAIL_TOKENS_FILE and SSL_CERT_FILE from %s",
        port, hail_user_name(settings), settings.hail_compat_dir,
    )
    return HailListener(server, task, port)
