"""`corral server`: API + driver (+ local workers) in one asyncio process."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
from collections.abc import Callable

import uvicorn
from fastapi import APIRouter

from corral.config import Settings
from corral.driver.autoscaler import Autoscaler
from corral.driver.driver import Driver
from corral.driver.worker_api import worker_router
from corral.errors import ConfigError, CorralError
from corral.home import hold_server_lock, release_server_lock
from corral.providers.base import InstanceProvider
from corral.providers.local import LocalProvider
from corral.providers.registry import create_provider
from corral.store.db import make_engine, migrate

log = logging.getLogger("corral.server")


def _bind(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def _bind_remembered(settings: Settings) -> socket.socket:
    """Port 0 means any port, but prefer the one used last time: workers that outlived a crashed
    server are still calling it, and reconnect without being told anything."""
    if settings.port == 0:
        remembered = settings.home / "server.port"
        with contextlib.suppress(OSError, ValueError):
            return _bind(settings.host, int(remembered.read_text()))
    return _bind(settings.host, settings.port)


def create_providers(settings: Settings) -> dict[str, InstanceProvider]:
    """One provider per instance collection; a provider that refuses its options is a ConfigError."""
    providers = {}
    for collection in settings.instance_collections:
        try:
            providers[collection.name] = create_provider(collection, settings)
        except ConfigError:
            raise
        except CorralError as exc:
            raise ConfigError(exc.message, field=exc.field) from None
    return providers


async def run_server(
    settings: Settings,
    *,
    started: Callable[[Driver, Autoscaler], None] | None = None,
    shutdown: asyncio.Event | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT (or `shutdown` is set); `started` sees the live driver and autoscaler.
    One server per home: a second one refuses (ServerAlreadyRunning) before touching anything."""
    providers = create_providers(settings)  # a bad provider_options is one clear error, before anything runs
    lock = hold_server_lock(settings.home)
    try:
        await _serve(settings, providers, started, shutdown)
    finally:
        release_server_lock(lock)


async def _serve(
    settings: Settings,
    providers: dict[str, InstanceProvider],
    started: Callable[[Driver, Autoscaler], None] | None,
    shutdown: asyncio.Event | None,
) -> None:
    from corral.api.app import create_app
    from corral.api.bootstrap import bootstrap

    settings.home.mkdir(parents=True, exist_ok=True)
    settings.log_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.db_url)
    await migrate(engine)
    tokens = await bootstrap(engine, settings)
    driver = Driver(engine, settings)
    await driver.start()
    routers: list[APIRouter] = []
    if settings.hail_compat_dir is not None:
        from corral.hail.routes import hail_routers

        routers += hail_routers()
    app = create_app(settings, engine, driver, extra_routers=routers,
                     first_routers=[worker_router(driver, settings.log_dir)])
    driver.tick_listeners.append(app.state.ui_feed.publish)  # the web pages' live updates
    sock = _bind_remembered(settings)
    host, port = sock.getsockname()[:2]
    (settings.home / "server.port").write_text(str(port))
    url = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
    config = uvicorn.Config(
        app, log_level="warning", access_log=False, timeout_keep_alive=30, timeout_graceful_shutdown=10
    )
    server = uvicorn.Server(config)
    # We handle SIGTERM/SIGINT ourselves: uvicorn would re-raise the signal after serve() returns,
    # killing the process before the provider, driver and url file are cleaned up below.
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    loop = asyncio.get_running_loop()
    shutdown = shutdown or asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, shutdown.set)
    serve = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started and not serve.done():
        await asyncio.sleep(0.01)
    provider = LocalProvider(driver, settings)
    hail = None
    autoscaler = Autoscaler(driver, settings, providers)
    try:
        if serve.done():
            await serve  # raises the startup error
        if settings.hail_compat_dir is not None:
            from corral.hail.serve import start_hail_listener

            hail = await start_hail_listener(settings, app, engine, tokens)
        if settings.local_workers > 0:
            await provider.start(url)
        await autoscaler.start(url)
        if settings.url_file is not None:
            tmp = settings.url_file.with_suffix(".tmp")
            tmp.write_text(json.dumps({"url": url, "pid": os.getpid()}))
            tmp.replace(settings.url_file)
        if started is not None:
            started(driver, autoscaler)
        log.warning("corral server listening on %s (store: %s)", url, engine.url.render_as_string())
        stopping = asyncio.create_task(shutdown.wait())
        await asyncio.wait({serve, stopping}, return_when=asyncio.FIRST_COMPLETED)
        stopping.cancel()
    finally:
        # Workers first, while the API still answers them (they drain and deactivate); then open
        # long polls are answered, and only then does the HTTP server stop.
        await autoscaler.stop()
        await provider.stop()
        driver.close_polls()
        app.state.ui_feed.close_streams()  # open pages' event streams end, so the HTTP server can stop
        if hail is not None:
            await hail.stop()
        server.should_exit = True
        with contextlib.suppress(Exception):
            await serve
        await driver.stop()
        with contextlib.suppress(Exception):
            if settings.url_file is not None:
                settings.url_file.unlink(missing_ok=True)
        await engine.dispose()


def serve(settings: Settings) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("corral").setLevel(logging.INFO)
    try:
        import uvloop

        uvloop.install()
    except ImportError:  # pragma: no cover
        pass
    asyncio.run(run_server(settings))
