"""Local provider: worker processes on this machine, speaking the same protocol as remote workers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
import uuid

import psutil

from corral.config import Settings
from corral.domain.resources import parse_bytes
from corral.domain.tokens import new_token
from corral.driver.driver import Driver
from corral.store import instances as instance_store

log = logging.getLogger("corral.providers.local")


class LocalProvider:
    name = "local"

    def __init__(self, driver: Driver, settings: Settings) -> None:
        self.driver = driver
        self.settings = settings
        self.pool = settings.pool
        self._procs: dict[str, asyncio.subprocess.Process] = {}
        self._adopted: dict[str, int] = {}
        self._tasks: list[asyncio.Task[None]] = []
        self._url = ""
        self._failures = 0
        self._stopping = False

    @property
    def worker_cores(self) -> float:
        if self.settings.local_worker_cores:
            return self.settings.local_worker_cores
        return max(1.0, (os.cpu_count() or 1) / max(1, self.settings.local_workers))

    @property
    def worker_memory(self) -> int:
        if self.settings.local_worker_memory:
            return parse_bytes(self.settings.local_worker_memory, field="local_worker_memory")
        return int(psutil.virtual_memory().total / max(1, self.settings.local_workers))

    async def start(self, driver_url: str) -> None:
        self._url = driver_url
        async with self.driver.engine.begin() as conn:
            await instance_store.ensure_collection(
                conn,
                self.pool,
                kind="pool",
                provider=self.name,
                config={"workers": self.settings.local_workers, "cores": self.worker_cores,
                        "memory_bytes": self.worker_memory},
            )
            live = await instance_store.live_instances(conn, self.pool)
        for rec in live:
            pid = int(rec.metadata.get("pid", 0))
            if rec.metadata.get("provider") == self.name and _is_our_worker(pid, rec.name):
                log.info("adopting local worker %s (pid %d)", rec.name, pid)
                self._adopted[rec.name] = pid
            else:
                self.driver.instance_lost(rec.name, "local worker process is gone")
        for _ in range(self.settings.local_workers - len(self._adopted)):
            await self.spawn()
        self._tasks.append(asyncio.create_task(self._watch_adopted(), name="local-provider-watch"))

    async def spawn(self) -> str:
        name = f"local-{uuid.uuid4().hex[:10]}"
        token = new_token()
        cores = self.worker_cores
        memory = self.worker_memory
        log_dir = self.settings.home / "workers"
        log_dir.mkdir(parents=True, exist_ok=True)
        await self.driver.register_instance(
            name=name,
            pool=self.pool,
            token=token,
            cores_mcpu=int(cores * 1000),
            memory_bytes=memory,
            metadata={"provider": self.name, "home": str(self.settings.home)},
        )
        env = {**os.environ, "CORRAL_WORKER_TOKEN": token, "CORRAL_HOME": str(self.settings.home)}
        if self.settings.jobs.share_user_environment:  # the embedded default: jobs see the user's venv, cwd
            env["CORRAL_SHARE_USER_ENV"] = "1"
        with open(log_dir / f"{name}.log", "ab") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "corral",
                "worker",
                "--url",
                self._url,
                "--name",
                name,
                "--cores",
                str(cores),
                "--memory",
                str(memory),
                "--runtime",
                self.settings.local_worker_runtime,
                env=env,
                stdout=out,
                stderr=asyncio.subprocess.STDOUT,
                stdin=asyncio.subprocess.DEVNULL,
                start_new_session=True,  # survives a server crash; adopted on restart
            )
        async with self.driver.engine.begin() as conn:
            await instance_store.set_instance_metadata(
                conn, name, {"provider": self.name, "home": str(self.settings.home), "pid": proc.pid}
            )
        self._procs[name] = proc
        self._tasks.append(asyncio.create_task(self._watch(name, proc), name=f"watch-{name}"))
        return name

    async def _watch(self, name: str, proc: asyncio.subprocess.Process) -> None:
        started = time.monotonic()
        code = await proc.wait()
        if self._procs.pop(name, None) is None:
            return  # stopped by us
        log.warning("local worker %s exited with %s", name, code)
        self.driver.instance_lost(name, f"worker process exited with code {code}")
        await self._replace(time.monotonic() - started)

    async def _replace(self, lived: float) -> None:
        """Keep the configured number of workers; back off if they die right after starting."""
        if lived < 5:
            self._failures += 1
            await asyncio.sleep(min(30.0, 0.5 * 2**self._failures))
        else:
            self._failures = 0
        if self._stopping:
            return
        try:
            await self.spawn()
        except Exception:
            log.exception("could not start a replacement local worker")

    async def _watch_adopted(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for name, pid in list(self._adopted.items()):
                if not _is_our_worker(pid, name):
                    del self._adopted[name]
                    self.driver.instance_lost(name, "adopted worker process exited")
                    await self._replace(lived=60.0)

    async def stop(self) -> None:
        self._stopping = True
        for task in self._tasks:
            task.cancel()
        pids = [p.pid for p in self._procs.values()] + list(self._adopted.values())
        procs, self._procs = self._procs, {}
        self._adopted.clear()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for proc in procs.values():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), max(0.1, deadline - time.monotonic()))
        for pid in pids:
            if psutil.pid_exists(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)


def _is_our_worker(pid: int, name: str) -> bool:
    if pid <= 0:
        return False
    try:
        proc = psutil.Process(pid)
        return proc.status() != psutil.STATUS_ZOMBIE and name in proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return False
