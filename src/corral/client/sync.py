"""Blocking access to `AsyncClient`: one implementation, run on a private event loop in a thread.

Each `SyncClient` attribute below is a typed view of the async method of the same name, so the
two never drift apart.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine, Iterator
from concurrent.futures import Future
from typing import Any, Concatenate, Generic, ParamSpec, TypeVar

from corral.api.schemas import JobSummary
from corral.client.http import AsyncClient

P = ParamSpec("P")
T = TypeVar("T")

CANCEL_GRACE_SECONDS = 2.0


class _LoopThread:
    """An event loop running forever in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="corral-client", daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def stop(self) -> None:
        if self.loop.is_running():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=5)
        if not self.loop.is_running():
            self.loop.close()


class _Blocking(Generic[P, T]):
    """Descriptor: `SyncClient().name(...)` runs `AsyncClient.name(...)` on the private loop."""

    def __init__(self, method: Callable[Concatenate[AsyncClient, P], Coroutine[Any, Any, T]]) -> None:
        self.method = method

    def __get__(self, obj: SyncClient | None, owner: type[SyncClient]) -> Callable[P, T]:
        if obj is None:
            raise AttributeError("a blocking method needs a SyncClient instance")
        client = obj

        def call(*args: P.args, **kwargs: P.kwargs) -> T:
            return client.run(self.method(client.aio, *args, **kwargs))

        return call


class SyncClient:
    """The async client behind a blocking interface (for scripts, the DSL and the CLI)."""

    def __init__(self, url: str, token: str | None, **options: Any) -> None:
        self._loop = _LoopThread()
        self.url = url.rstrip("/")

        async def make() -> AsyncClient:
            return AsyncClient(url, token, **options)  # created on the loop that will use it

        self.aio: AsyncClient = self._loop.submit(make()).result()
        self._closed = False

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run one coroutine on the client's loop and wait for its result."""
        if self._closed:
            coro.close()
            raise RuntimeError("this Corral client is closed")
        ended = threading.Event()

        async def call() -> T:
            try:
                return await coro
            finally:
                ended.set()

        future = self._loop.submit(call())
        try:
            return future.result()
        except BaseException:
            # Ctrl-C while a call is on the wire (a status request the server holds, say): cancel it
            # and let it unwind on the loop, so nothing is left pending when the program exits.
            if future.cancel():
                ended.wait(CANCEL_GRACE_SECONDS)
            raise

    def close(self) -> None:
        if self._closed:
            return
        self.run(self.aio.aclose())
        self._closed = True
        self._loop.stop()

    def __enter__(self) -> SyncClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def iter_jobs(
        self, batch_id: int, *, state: str | None = None, page_size: int = 500
    ) -> Iterator[JobSummary]:
        """Every job of a batch (optionally in `state`), page by page."""
        last: int | None = None
        while True:
            page = self.list_jobs(batch_id, state=state, last_job_id=last, limit=page_size)
            yield from page.jobs
            if not page.jobs or page.last_job_id is None:
                return
            last = page.last_job_id

    healthcheck = _Blocking(AsyncClient.healthcheck)
    version = _Blocking(AsyncClient.version)
    me = _Blocking(AsyncClient.me)
    check_invariants = _Blocking(AsyncClient.check_invariants)
    create_fast = _Blocking(AsyncClient.create_fast)
    create_batch = _Blocking(AsyncClient.create_batch)
    create_jobs = _Blocking(AsyncClient.create_jobs)
    commit_update = _Blocking(AsyncClient.commit_update)
    update_fast = _Blocking(AsyncClient.update_fast)
    create_update = _Blocking(AsyncClient.create_update)
    list_batches = _Blocking(AsyncClient.list_batches)
    get_batch = _Blocking(AsyncClient.get_batch)
    cancel_batch = _Blocking(AsyncClient.cancel_batch)
    delete_batch = _Blocking(AsyncClient.delete_batch)
    retry_batch = _Blocking(AsyncClient.retry_batch)
    list_jobs = _Blocking(AsyncClient.list_jobs)
    get_job = _Blocking(AsyncClient.get_job)
    job_logs = _Blocking(AsyncClient.job_logs)
    job_step_log = _Blocking(AsyncClient.job_step_log)
    job_attempts = _Blocking(AsyncClient.job_attempts)
    create_user = _Blocking(AsyncClient.create_user)
    create_billing_project = _Blocking(AsyncClient.create_billing_project)
    add_billing_project_user = _Blocking(AsyncClient.add_billing_project_user)
    list_billing_projects = _Blocking(AsyncClient.list_billing_projects)
    list_pools = _Blocking(AsyncClient.list_pools)
    get_pool = _Blocking(AsyncClient.get_pool)
    list_instances = _Blocking(AsyncClient.list_instances)
    get_instance = _Blocking(AsyncClient.get_instance)
    create_instance_token = _Blocking(AsyncClient.create_instance_token)
    list_users = _Blocking(AsyncClient.list_users)
    get_billing_project = _Blocking(AsyncClient.get_billing_project)
    remove_billing_project_user = _Blocking(AsyncClient.remove_billing_project_user)
    billing_project_action = _Blocking(AsyncClient.billing_project_action)
    set_billing_limit = _Blocking(AsyncClient.set_billing_limit)
    billing_report = _Blocking(AsyncClient.billing_report)
    billing_rates = _Blocking(AsyncClient.billing_rates)
