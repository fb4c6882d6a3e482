"""python -m tests.fakes.vastai --dir D --offers F --api-key K --port-file P [delays…]: serve the fake."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
import socket
from pathlib import Path

import uvicorn
from tests.fakes.vastai.server import Delays, FakeVast, create_app


async def serve(args: argparse.Namespace) -> None:
    fake = FakeVast(
        Path(args.dir),
        json.loads(Path(args.offers).read_text()),
        args.api_key,
        Delays(**json.loads(args.delays)),
        rate_scale=args.rate_scale,
    )
    fake.machines.setup()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(512)
    server = uvicorn.Server(uvicorn.Config(create_app(fake), log_level="warning", access_log=False))
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign,assignment]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.01)
    tmp = Path(args.port_file).with_suffix(".tmp")
    tmp.write_text(str(sock.getsockname()[1]))
    tmp.replace(args.port_file)
    await stop.wait()
    try:
        await fake.shutdown()
    finally:
        server.should_exit = True
        await task


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser()
    parser.add_argument("--dir", required=True)
    parser.add_argument("--offers", required=True)
    parser.add_argument("--api-key", required=True)
    parser.add_argument("--port-file", required=True)
    parser.add_argument("--rate-scale", type=float, default=0.02)
    parser.add_argument("--delays", default="{}")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
