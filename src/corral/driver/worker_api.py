"""HTTP routes the workers call (docs/worker-protocol.md); an instance token touches only its attempts."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import os
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response
from fastapi import Path as Path_
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

from corral import __version__
from corral.domain.tokens import hash_token
from corral.driver.driver import Driver
from corral.driver.instances import InstanceState
from corral.runtimes.config import HOST_ISOLATION, HOST_REFUSED
from corral.store.logs import log_path
from corral.store.system_view import set_instance_host
from corral.worker.protocol import (
    MAX_ID,
    STEPS,
    ActivateRequest,
    AttemptKey,
    CompletedEvent,
    EventsRequest,
    PollRequest,
)

log = logging.getLogger("corral.driver.worker_api")
INLINE_WRITE_MAX = 64 * 1024  # inline logs up to this many bytes in all are written on the event loop


class _LoggedOnce(APIRoute):
    """A worker whose request is malformed gets its 400 every time, but the server logs it once."""

    seen: set[tuple[str, str]] = set()

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                who = hash_token(request.headers.get("authorization", ""))[:12]
                what = f"{self.path}: {str(exc.errors()[:1])[:300]}"
                if (who, what) not in self.seen and len(self.seen) < 10_000:
                    self.seen.add((who, what))
                    log.warning("worker (token %s) sent a malformed request, refused: %s", who, what)
                raise

        return handle


def worker_router(driver: Driver, log_dir: Path) -> APIRouter:
    router = APIRouter(prefix="/api/v1/worker", tags=["worker"], route_class=_LoggedOnce)

    async def instance(authorization: str | None = Header(default=None)) -> InstanceState:
        # async: FastAPI would run a plain def on a worker thread, a thread hop per worker request.
        if not authorization or not authorization.lower().startswith("bearer "):
            raise HTTPException(401, "an instance token is required: Authorization: Bearer <token>")
        inst = driver.authenticate(authorization.split(" ", 1)[1].strip())
        if inst is None:
            raise HTTPException(401, "unknown or retired instance token")
        return inst

    @router.post("/activate")
    async def activate(body: ActivateRequest, inst: InstanceState = Depends(instance)) -> dict[str, Any]:
        if "host" in body.runtimes and not driver.settings.jobs.allow_host_runtime:
            raise HTTPException(403, f"runtimes: {HOST_REFUSED}")
        await driver.activate(inst, body.cores_mcpu, body.memory_bytes, queues=body.queues)
        if "host" in body.runtimes:  # visible on the instance: its jobs are not sandboxed
            await driver.note_instance(inst, {"runtime": "host", "isolation": HOST_ISOLATION})
        if body.hostname:
            async with driver.engine.begin() as conn:
                await set_instance_host(conn, inst.name, body.hostname)
        return {
            "instance_name": inst.name,
            "cores_mcpu": inst.cores_mcpu,  # what the driver will use: at most the instance's shape
            "memory_bytes": inst.memory_bytes,
            "heartbeat_interval": driver.settings.heartbeat_interval,
            "log_upload": True,
            "driver_version": __version__,
        }

    @router.post("/poll")
    async def poll(body: PollRequest, inst: InstanceState = Depends(instance)) -> dict[str, Any]:
        return await driver.poll(inst, body.known, body.wait)

    @router.post("/events")
    async def events(body: EventsRequest, inst: InstanceState = Depends(instance)) -> dict[str, Any]:
        inline = _inline_logs(inst, body.events, log_dir)
        if sum(len(data) for _, data in inline) > INLINE_WRITE_MAX:
            await asyncio.to_thread(_write_logs, inline)  # durable before the completion is committed
        elif inline:  # a few small files: a thread hop would cost more than writing them here
            _write_logs(inline)
        if body.known is None:  # an older worker: it polls for its work separately
            return {"ack": await driver.report(inst, body.events)}
        return await driver.report_and_poll(inst, body.events, body.known)

    @router.put("/logs/{batch_id}/{job_id}/{attempt_id}/{step}")
    async def upload_log(
        batch_id: Annotated[int, Path_(ge=1, le=MAX_ID)],
        job_id: Annotated[int, Path_(ge=1, le=MAX_ID)],
        attempt_id: Annotated[int, Path_(ge=1, le=MAX_ID)],
        step: str,
        request: Request,
        inst: InstanceState = Depends(instance),
    ) -> dict[str, Any]:
        if step not in STEPS:
            raise HTTPException(400, f"step must be one of {', '.join(STEPS)}")
        if str(AttemptKey(batch_id, job_id, attempt_id)) not in inst.assigned:
            raise HTTPException(404, "no such attempt on this instance")
        body = await request.body()
        await asyncio.to_thread(_write_logs, [(log_path(log_dir, batch_id, job_id, attempt_id, step), body)])
        return {"bytes": len(body)}

    @router.post("/deactivate")
    async def deactivate(inst: InstanceState = Depends(instance)) -> dict[str, Any]:
        await driver.deactivate(inst)
        return {"ok": True}

    return router


def _inline_logs(
    inst: InstanceState, events: list[Any], log_dir: Path
) -> list[tuple[Path, bytes]]:
    """Small step logs a `completed` event carries (base64 by step), taken out of the event."""
    out: list[tuple[Path, bytes]] = []
    for event in events:
        if not isinstance(event, CompletedEvent):
            continue
        logs, event.logs = event.logs, None
        if not logs or event.key not in inst.assigned:
            continue
        batch_id, job_id, attempt_id = event.attempt
        for step, encoded in logs.items():
            if step not in STEPS:
                raise HTTPException(400, f"events[].logs: steps are {', '.join(STEPS)}; values base64")
            try:
                data = base64.b64decode(encoded, validate=True)
            except binascii.Error as exc:
                raise HTTPException(400, f"events[].logs.{step}: not base64: {exc}") from None
            out.append((log_path(log_dir, batch_id, job_id, attempt_id, step), data))
    return out


def _write_logs(logs: list[tuple[Path, bytes]]) -> None:
    """Each log whole or not at all: written beside it and renamed over it; an empty one (most short
    jobs') is just made empty, which is as atomic. Its batch's directory is made when it is missing."""
    for path, data in logs:
        try:
            _write_log(path, data)
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_log(path, data)


def _write_log(path: Path, data: bytes) -> None:
    if not data:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666))
        return
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)  # readers see the whole log or none
