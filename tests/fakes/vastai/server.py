"""A fake vast.ai REST API: the routes, fields, states, error bodies and rate limits of the documented API.

Instances are real sshd processes in network namespaces (machines.py) with a fake `nvidia-smi` and a
stand-in `torch`. A ledger of instance-seconds, storage and peak spend, and a control API (`/control/…`)
to inject failures, are for the tests. Delays are parameters: a test runs them fast, bench realistic.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from tests.fakes.vastai.machines import InstanceHost, Machines

log = logging.getLogger("fake-vast")

# The documented minimum interval per endpoint and identity (seconds), scaled by `rate_scale`.
RATE_INTERVALS = {"create": 4.5, "show": 2.0, "list": 1.0, "destroy": 3.0, "search": 6.0}
MACHINE_FAULTS = {
    "offer_gone",
    "double_rent",
    "stuck_loading",
    "oci_error",
    "ssh_refused",
    "ssh_hang",
    "ssh_close",
    "wrong_gpu_count",
    "nvml_failure",
    "cuda_broken",
    "bid_too_low",
}
SPECIAL_QUERY_KEYS = {"order", "type", "limit", "allocated_storage", "disable_bundling", "extra_ids"}


@dataclass
class Delays:
    search: float = 0.0  # a search's own latency
    create: float = 0.0  # the rent call's latency
    scheduling: float = 0.2  # actual_status null before loading
    loading: float = 0.5  # pulling the image
    ssh: float = 0.2  # after `running`, until sshd answers
    create_hang: float = 30.0  # a create that "never answers" answers after this


@dataclass
class FakeInstance:
    id: int
    offer: dict[str, Any]
    label: str | None
    image: str
    disk: float
    is_bid: bool
    dph: float
    env: dict[str, Any]
    faults: set[str]
    created: float
    actual_status: str | None = None
    intended_status: str = "running"
    cur_state: str = "running"
    next_state: str = "running"
    status_msg: str | None = None
    running_since: float | None = None
    running_seconds: float = 0.0
    destroyed_at: float | None = None
    host: InstanceHost | None = None
    task: asyncio.Task[None] | None = None

    def settle(self, now: float, *, ended: bool = False) -> None:
        """Bill the running time up to now; `ended`: it stops running here."""
        if self.running_since is not None:
            self.running_seconds += now - self.running_since
            self.running_since = None if ended else now


@dataclass
class FakeVast:
    directory: Path
    offers: list[dict[str, Any]]
    api_key: str
    delays: Delays = field(default_factory=Delays)
    rate_scale: float = 0.02
    machines: Machines = field(init=False)
    instances: dict[int, FakeInstance] = field(default_factory=dict)
    ssh_keys: list[str] = field(default_factory=list)
    machine_faults: dict[int, set[str]] = field(default_factory=dict)
    http_5xx: int = 0  # the next N API calls answer 502/503
    create_timeouts: int = 0  # the next N rents create the instance but answer only after create_hang
    slow_list: float = 0.0
    rate_limits: bool = True
    offline_machines: set[int] = field(default_factory=set)  # their offers are gone from the market
    last_call: dict[tuple[str, str], float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    peak_dph: float = 0.0
    peak_instances: int = 0
    next_id: int = 7_000_001

    def __post_init__(self) -> None:
        self.machines = Machines(self.directory)
        self.by_ask = {int(o["id"]): o for o in self.offers}
        self.rented_asks: set[int] = set()

    # ------------------------------------------------------------ views

    def live(self) -> list[FakeInstance]:
        return [i for i in self.instances.values() if i.destroyed_at is None]

    def view(self, inst: FakeInstance) -> dict[str, Any]:
        o = inst.offer
        host = inst.host
        running = inst.actual_status == "running" and host is not None
        return {
            "id": inst.id,
            "label": inst.label,
            "machine_id": o["machine_id"],
            "host_id": o["host_id"],
            "actual_status": inst.actual_status,
            "intended_status": inst.intended_status,
            "cur_state": inst.cur_state,
            "next_state": inst.next_state,
            "status_msg": inst.status_msg,
            "ssh_host": "127.0.0.1" if running else None,
            "ssh_port": host.proxy_port if running and host else None,
            "ssh_idx": "1",
            "public_ipaddr": host.machine.address if host else None,
            "ports": {"22/tcp": [{"HostIp": "0.0.0.0", "HostPort": str(host.port)}]}
            if running and host
            else {},
            "image_uuid": inst.image,
            "image_runtype": "ssh",
            "extra_env": [[k, v] for k, v in inst.env.items()],
            "start_date": inst.created,
            "dph_total": inst.dph,
            "dph_base": o["dph_base"],
            "is_bid": inst.is_bid,
            "num_gpus": o["num_gpus"],
            "gpu_name": o["gpu_name"],
            "gpu_ram": o["gpu_ram"],
            "cpu_cores_effective": o["cpu_cores_effective"],
            "cpu_ram": o["cpu_ram"],
            "disk_space": inst.disk,
            "geolocation": o["geolocation"],
            "min_bid": o["min_bid"],
            "storage_cost": o["storage_cost"],
            "direct_port_count": o["direct_port_count"],
            "reliability2": o["reliability2"],
        }

    def ledger(self) -> dict[str, Any]:
        now = time.time()
        rows = []
        for inst in self.instances.values():
            inst.settle(now)
            existed = (inst.destroyed_at or now) - inst.created
            storage = inst.disk * float(inst.offer["storage_cost"]) / (30 * 24 * 3600) * existed
            rows.append(
                {
                    "id": inst.id,
                    "label": inst.label,
                    "machine_id": inst.offer["machine_id"],
                    "ask_id": inst.offer["id"],
                    "dph": inst.dph,
                    "is_bid": inst.is_bid,
                    "actual_status": inst.actual_status,
                    "created": inst.created,
                    "destroyed_at": inst.destroyed_at,
                    "running_seconds": inst.running_seconds,
                    "existed_seconds": existed,
                    "cost": inst.dph * inst.running_seconds / 3600 + storage,
                }
            )
        return {
            "instances": rows,
            "peak_dph": self.peak_dph,
            "peak_instances": self.peak_instances,
            "counts": dict(self.counts),
            "ssh_keys": len(self.ssh_keys),
        }

    def _peaks(self) -> None:
        live = self.live()
        self.peak_dph = max(self.peak_dph, sum(i.dph for i in live))
        self.peak_instances = max(self.peak_instances, len(live))

    # ------------------------------------------------------------ state machine

    async def _lifecycle(self, inst: FakeInstance) -> None:
        try:
            await self._advance(inst)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("instance %s: lifecycle failed", inst.id)
            inst.status_msg = "fake: lifecycle failed (see fake.log)"

    async def _advance(self, inst: FakeInstance) -> None:
        d = self.delays
        await asyncio.sleep(d.scheduling)
        if "oci_error" in inst.faults:
            inst.actual_status, inst.cur_state = "exited", "stopped"
            inst.status_msg = (
                "Error response from daemon: failed to create task for container: OCI runtime "
                "create failed: runc create failed: unable to start container process"
            )
            return
        inst.actual_status, inst.status_msg = "loading", f"Pulling {inst.image}"
        if "stuck_loading" in inst.faults or "double_rent" in inst.faults:
            return  # never leaves loading (a host rented twice never starts the second)
        await asyncio.sleep(d.loading)
        o = inst.offer
        gpus = [{"name": o["gpu_name"], "memory_mb": int(o["gpu_ram"])} for _ in range(int(o["num_gpus"]))]
        if "wrong_gpu_count" in inst.faults:
            gpus = gpus[:-1]
        state = {
            "gpus": gpus,
            "cuda": str(o["cuda_max_good"]),
            "nvml_failure": "nvml_failure" in inst.faults,
            "cuda_broken": "cuda_broken" in inst.faults,
        }
        inst.host = await self.machines.boot(inst.id, int(o["machine_id"]), list(self.ssh_keys), state)
        inst.host.mode = (
            "hang" if "ssh_hang" in inst.faults else "close" if "ssh_close" in inst.faults else "normal"
        )
        inst.actual_status, inst.status_msg = "running", "success, running"
        inst.running_since = time.time()
        await asyncio.sleep(d.ssh)
        if "ssh_refused" not in inst.faults:
            await asyncio.to_thread(self.machines.start_sshd, inst.host, f"C.{inst.id}")

    async def destroy(self, inst: FakeInstance) -> None:
        if inst.task is not None:
            inst.task.cancel()
            with contextlib.suppress(BaseException):
                await inst.task
        inst.settle(time.time(), ended=True)
        inst.actual_status = "exited"
        inst.destroyed_at = time.time()
        await self.machines.stop_instance(inst.id)
        self.rented_asks.discard(int(inst.offer["id"]))

    async def stop(self, inst: FakeInstance, message: str) -> None:
        inst.settle(time.time(), ended=True)
        inst.actual_status = inst.cur_state = inst.next_state = inst.intended_status = "stopped"
        inst.status_msg = message
        await self.machines.stop_instance(inst.id, keep_proxy=True)

    async def shutdown(self) -> None:
        for inst in self.live():
            await self.destroy(inst)
        self.machines.teardown()


def _error(status: int, error: str, msg: str, **extra: Any) -> JSONResponse:
    return JSONResponse({"success": False, "error": error, "msg": msg, **extra}, status_code=status)


def _matches(value: Any, op: str, want: Any, key: str) -> bool:
    if key == "geolocation" and isinstance(value, str):
        value = value.rsplit(",", 1)[-1].strip()  # vast filters geolocation by country code
    try:
        if op == "eq":
            return bool(value == want)
        if op == "neq":
            return bool(value != want)
        if op == "gt":
            return bool(value > want)
        if op == "gte":
            return bool(value >= want)
        if op == "lt":
            return bool(value < want)
        if op == "lte":
            return bool(value <= want)
        if op == "in":
            return value in want
        if op in ("notin", "nin"):
            return value not in want
    except TypeError:
        return False
    raise ValueError(op)


def create_app(fake: FakeVast) -> FastAPI:
    app = FastAPI()

    def identity(request: Request) -> str | None:
        auth = request.headers.get("authorization", "")
        key = auth.removeprefix("Bearer ").strip() if auth.startswith("Bearer ") else None
        return key or request.query_params.get("api_key")

    async def gate(request: Request, endpoint: str) -> Response | None:
        """Auth, injected 5xx, then the endpoint's rate limit (429 with no Retry-After)."""
        fake.counts[endpoint] = fake.counts.get(endpoint, 0) + 1
        key = identity(request)
        if key != fake.api_key:
            return _error(401, "auth_error", "Invalid user key")
        if fake.http_5xx > 0:
            fake.http_5xx -= 1
            fake.counts["5xx"] = fake.counts.get("5xx", 0) + 1
            return PlainTextResponse(
                "<html><body><h1>502 Bad Gateway</h1></body></html>", status_code=random.choice([502, 503])
            )
        if fake.rate_limits and endpoint in RATE_INTERVALS:
            now = time.monotonic()
            last = fake.last_call.get((key, endpoint))
            if last is not None and now - last < RATE_INTERVALS[endpoint] * fake.rate_scale:
                fake.counts["429"] = fake.counts.get("429", 0) + 1
                if random.random() < 0.5:
                    return PlainTextResponse("API requests too frequent", status_code=429)
                return JSONResponse(
                    {
                        "detail": f"API requests too frequent endpoint threshold="
                        f"{RATE_INTERVALS[endpoint] * fake.rate_scale:.2f}s"
                    },
                    status_code=429,
                )
            fake.last_call[(key, endpoint)] = now
        return None

    @app.post("/api/v0/bundles/")
    async def search(request: Request) -> Response:
        if (denied := await gate(request, "search")) is not None:
            return denied
        await asyncio.sleep(fake.delays.search)
        try:
            query = await request.json()
            assert isinstance(query, dict)
        except Exception:
            return _error(400, "invalid_args", "the body must be a JSON object of {field: {op: value}}")
        taken, offline = fake.rented_asks, fake.offline_machines
        found = [o for o in fake.offers if int(o["id"]) not in taken and int(o["machine_id"]) not in offline]
        for key, cond in query.items():
            if key in SPECIAL_QUERY_KEYS or key in ("rented", "rentable", "external"):
                continue
            if not isinstance(cond, dict):
                return _error(400, "invalid_args", f"{key}: expected {{op: value}}")
            for op, want in cond.items():
                try:
                    found = [o for o in found if _matches(o.get(key), op, want, key)]
                except ValueError:
                    return _error(400, "invalid_args", f"{key}: unknown operator {op!r}")
        for column, direction in reversed(query.get("order") or [["score", "desc"]]):
            found.sort(key=lambda o, c=column: o.get(c) or 0, reverse=direction == "desc")
        limit = int(query.get("limit") or 64)
        bid = query.get("type") == "bid"
        return JSONResponse(
            {"offers": [{**o, "rentable": True, "rented": False, "is_bid": bid} for o in found[:limit]]}
        )

    @app.put("/api/v0/asks/{ask_id}/")
    async def rent(ask_id: int, request: Request) -> Response:
        if (denied := await gate(request, "create")) is not None:
            return denied
        await asyncio.sleep(fake.delays.create)
        body = await request.json()
        if not isinstance(body, dict) or not body.get("image"):
            return _error(400, "invalid_args", "image: required")
        offer = fake.by_ask.get(ask_id)
        faults = fake.machine_faults.get(int(offer["machine_id"]), set()) if offer else set()
        if offer is None or ask_id in fake.rented_asks or "offer_gone" in faults:
            if offer is not None and "offer_gone" in faults:
                fake.rented_asks.add(ask_id)  # someone else rented it between our search and rent
            status = 410 if body.get("cancel_unavail") else 404
            return _error(status, "no_such_ask", f"Instance type by id {ask_id} is not available.")
        price = body.get("price")
        is_bid = price is not None
        if "double_rent" not in faults:
            fake.rented_asks.add(ask_id)
        min_bid = float(offer["min_bid"]) * (3.0 if "bid_too_low" in faults else 1.0)
        inst = FakeInstance(
            fake.next_id,
            offer,
            body.get("label"),
            str(body["image"]),
            float(body.get("disk") or 10),
            is_bid,
            float(price) if is_bid else float(offer["dph_total"]),
            dict(body.get("env") or {}),
            set(faults),
            time.time(),
        )
        fake.next_id += 1
        fake.instances[inst.id] = inst
        fake._peaks()
        if is_bid and float(price) < min_bid:
            inst.actual_status = inst.cur_state = inst.next_state = inst.intended_status = "stopped"
            inst.status_msg = "bid below the current minimum price"
            return _error(
                400,
                "invalid_price",
                f"Your bid ${float(price):.4f}/hr is below the minimum ${min_bid:.4f}/hr for this machine",
                new_contract=inst.id,
            )
        inst.task = asyncio.create_task(fake._lifecycle(inst))
        if fake.create_timeouts > 0:
            fake.create_timeouts -= 1
            await asyncio.sleep(fake.delays.create_hang)
        return JSONResponse({"success": True, "new_contract": inst.id})

    @app.get("/api/v1/instances/")
    async def list_instances(request: Request, limit: int = 25, after_token: str | None = None) -> Response:
        if (denied := await gate(request, "list")) is not None:
            return denied
        await asyncio.sleep(fake.slow_list)
        live = sorted(fake.live(), key=lambda i: i.id)
        after = int(after_token) if after_token else 0
        page = [i for i in live if i.id > after][: max(1, min(limit, 100))]
        more = bool(page) and any(i.id > page[-1].id for i in live)
        return JSONResponse(
            {"instances": [fake.view(i) for i in page], "next_token": str(page[-1].id) if more else None}
        )

    @app.get("/api/v0/instances/{instance_id}/")
    async def show(instance_id: int, request: Request) -> Response:
        if (denied := await gate(request, "show")) is not None:
            return denied
        inst = fake.instances.get(instance_id)
        alive = inst is not None and inst.destroyed_at is None
        return JSONResponse({"instances": fake.view(inst) if alive and inst else None})

    @app.delete("/api/v0/instances/{instance_id}/")
    async def destroy(instance_id: int, request: Request) -> Response:
        if (denied := await gate(request, "destroy")) is not None:
            return denied
        inst = fake.instances.get(instance_id)
        if inst is None or inst.destroyed_at is not None:
            return _error(404, "no_such_instance", f"Instance {instance_id} not found.")
        await fake.destroy(inst)
        return JSONResponse({"success": True})

    @app.put("/api/v0/instances/{instance_id}/")
    async def change(instance_id: int, request: Request) -> Response:
        if (denied := await gate(request, "other")) is not None:
            return denied
        inst = fake.instances.get(instance_id)
        if inst is None or inst.destroyed_at is not None:
            return _error(404, "no_such_instance", f"Instance {instance_id} not found.")
        body = await request.json()
        if "label" in body:
            inst.label = body["label"]
        if body.get("state") == "stopped":
            await fake.stop(inst, "stopped by user")
        return JSONResponse({"success": True})

    @app.post("/api/v0/ssh/")
    async def add_key(request: Request) -> Response:
        if (denied := await gate(request, "other")) is not None:
            return denied
        body = await request.json()
        key = str(body.get("ssh_key") or "").strip() if isinstance(body, dict) else ""
        if not key.startswith(("ssh-", "ecdsa-")):
            return _error(400, "invalid_args", "ssh_key: not an OpenSSH public key")
        if key not in fake.ssh_keys:
            fake.ssh_keys.append(key)
        return JSONResponse({"success": True, "key": {"id": fake.ssh_keys.index(key) + 1, "public_key": key}})

    # ------------------------------------------------------------ control (tests only)

    @app.get("/control/ledger")
    async def ledger() -> Response:
        return JSONResponse(fake.ledger())

    @app.post("/control/faults")
    async def faults(request: Request) -> Response:
        body = await request.json()
        for machine, names in (body.get("machines") or {}).items():
            unknown = set(names) - MACHINE_FAULTS
            if unknown:
                return _error(400, "invalid_args", f"unknown faults {sorted(unknown)}")
            fake.machine_faults[int(machine)] = set(names)
        for key in ("http_5xx", "create_timeouts"):
            if key in body:
                setattr(fake, key, int(body[key]))
        if "slow_list" in body:
            fake.slow_list = float(body["slow_list"])
        if "rate_limits" in body:
            fake.rate_limits = bool(body["rate_limits"])
        if "rate_scale" in body:
            fake.rate_scale = float(body["rate_scale"])
        return JSONResponse({"success": True})

    @app.post("/control/instances/{instance_id}/{action}")
    async def act(instance_id: int, action: str, request: Request) -> Response:
        inst = fake.instances.get(instance_id)
        if inst is None or inst.destroyed_at is not None:
            return _error(404, "no_such_instance", f"Instance {instance_id} not found.")
        if action == "preempt":  # outbid: the container is stopped
            await fake.stop(inst, "Instance was outbid and stopped")
        elif action in ("offline", "unknown"):  # the host is gone (or silent): its network and processes
            inst.settle(time.time(), ended=True)
            inst.actual_status = action
            inst.status_msg = "host offline" if action == "offline" else "no heartbeat from host"
            fake.offline_machines.add(int(inst.offer["machine_id"]))
            if inst.host is not None:
                fake.machines.set_link(inst.host.machine, False)
                await fake.machines.stop_instance(inst.id, keep_proxy=True)
        elif action == "gpus":
            fake.machines.write_gpus(instance_id, await request.json())
        else:
            return _error(400, "invalid_args", f"unknown action {action!r}")
        return JSONResponse({"success": True})

    return app
