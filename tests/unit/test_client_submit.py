"""Submission: bunching, the create-fast / bunches paths, idempotency tokens, retries and errors."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from corral.client.compile import split_bunches
from corral.client.dsl import Batch
from corral.client.http import AsyncClient, ServerUnreachable
from corral.client.sync import SyncClient
from corral.errors import InvalidInput, NotFound

Handler = Callable[[httpx.Request], httpx.Response]


class FakeBackend:
    """A backend whose client talks to `handler` instead of a server."""

    billing_project = "default"
    tmpdir = "file:///shared/tmp"

    def __init__(self, handler: Handler, retries: int = 3) -> None:
        self._client = SyncClient(
            "http://corral.test",
            "tok",
            transport=httpx.MockTransport(handler),
            retries=retries,
            backoff=0.001,
        )

    def client(self) -> SyncClient:
        return self._client

    def close(self) -> None:
        self._client.close()


class Recorder:
    """A tiny fake server: records every call and answers like the REST API."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []
        self.fail_first: dict[str, Exception | int] = {}

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        body = json.loads(request.content) if request.content else None
        self.calls.append((request.method, path, body))
        failure = self.fail_first.pop(path, None)
        if isinstance(failure, Exception):
            raise failure
        if isinstance(failure, int):
            return httpx.Response(failure, json={"error": "x", "message": "busy", "field": None})
        if path.endswith("/create-fast"):
            return httpx.Response(200, json={"id": 7, "update_id": 1, "start_job_id": 1})
        if path.endswith("/batches/create"):
            return httpx.Response(200, json={"id": 7, "update_id": 1, "start_job_id": 1})
        if path.endswith("/jobs/create"):
            return httpx.Response(200, json={"inserted": len(body)})
        if path.endswith("/commit"):
            return httpx.Response(200, json={"update_id": 1, "start_job_id": 1})
        if path.endswith("/update-fast"):
            return httpx.Response(200, json={"update_id": 2, "start_job_id": 11})
        return httpx.Response(404, json={"error": "NotFound", "message": f"no route {path}", "field": None})

    def paths(self) -> list[str]:
        return [p for _, p, _ in self.calls]


def _chain(b: Batch, n: int) -> None:
    previous = None
    for i in range(n):
        job = b.new_job(f"j{i}")
        job.command(f"echo {i}")
        if previous is not None:
            job.depends_on(previous)
        previous = job


def test_2500_jobs_are_split_into_bunches_with_contiguous_ids_and_parents(tmp_path: Path) -> None:
    b = Batch()
    _chain(b, 2500)
    bunches = split_bunches(b.compile(tmpdir="file:///t", cwd=tmp_path))
    assert [len(x) for x in bunches] == [1000, 1000, 500]
    ids = [spec.job_id for bunch in bunches for spec in bunch]
    assert ids == list(range(1, 2501))
    for bunch in bunches:
        for spec in bunch:
            assert spec.in_update_parent_ids == ([] if spec.job_id == 1 else [spec.job_id - 1])


def test_bunches_also_respect_a_byte_limit(tmp_path: Path) -> None:
    b = Batch()
    _chain(b, 10)
    bunches = split_bunches(b.compile(tmpdir="file:///t", cwd=tmp_path), max_bytes=1)
    assert [len(x) for x in bunches] == [1] * 10


def test_a_small_batch_goes_in_one_create_fast_call(tmp_path: Path) -> None:
    server = Recorder()
    backend = FakeBackend(server)
    try:
        b = Batch(name="small", backend=backend)
        _chain(b, 3)
        handle = b.submit()
    finally:
        backend.close()
    assert handle.id == 7 and [j.job_id for j in b.jobs] == [1, 2, 3]
    ((method, path, body),) = server.calls
    assert (method, path) == ("POST", "/api/v1/batches/create-fast")
    assert body["batch"]["token"] == b.token and body["batch"]["n_jobs"] == 3
    assert body["batch"]["attributes"] == {"name": "small"}
    assert [j["job_id"] for j in body["bunch"]] == [1, 2, 3]


def test_a_large_batch_is_created_sent_in_bunches_and_committed() -> None:
    server = Recorder()
    backend = FakeBackend(server)
    try:
        b = Batch(backend=backend)
        _chain(b, 2500)
        b.submit()
    finally:
        backend.close()
    paths = server.paths()
    assert paths[0] == "/api/v1/batches/create" and paths[-1] == "/api/v1/batches/7/updates/1/commit"
    bunches = [body for _, p, body in server.calls if p.endswith("/jobs/create")]
    assert sorted(len(x) for x in bunches) == [500, 1000, 1000]
    assert sorted(j["job_id"] for x in bunches for j in x) == list(range(1, 2501))
    assert server.calls[0][2]["n_jobs"] == 2500


def test_a_retry_after_a_network_error_reuses_the_token() -> None:
    server = Recorder()
    server.fail_first["/api/v1/batches/create-fast"] = httpx.ReadError("connection reset")
    backend = FakeBackend(server)
    try:
        b = Batch(backend=backend)
        b.new_job().command("true")
        b.submit()
    finally:
        backend.close()
    tokens = [body["batch"]["token"] for _, _, body in server.calls]
    assert tokens == [b.token, b.token]


def test_calling_run_again_after_a_failure_resends_the_same_token() -> None:
    server = Recorder()
    server.fail_first["/api/v1/batches/create-fast"] = httpx.ConnectError("refused")
    backend = FakeBackend(server, retries=0)
    try:
        b = Batch(backend=backend)
        b.new_job().command("true")
        with pytest.raises(ServerUnreachable):
            b.submit()
        b.submit()
    finally:
        backend.close()
    assert [body["batch"]["token"] for _, _, body in server.calls] == [b.token, b.token]


def test_jobs_added_after_submission_are_appended_as_an_update() -> None:
    server = Recorder()
    backend = FakeBackend(server)
    try:
        b = Batch(backend=backend)
        first = b.new_job("first")
        first.command("true")
        b.submit()
        b.new_job("second").depends_on(first).command("true")
        b.submit()
    finally:
        backend.close()
    _, path, body = server.calls[-1]
    assert path == "/api/v1/batches/7/update-fast"
    assert body["update"]["n_jobs"] == 1 and body["update"]["token"] != b.token
    assert body["bunch"][0]["job_id"] == 1 and body["bunch"][0]["absolute_parent_ids"] == [1]
    assert b.jobs[1].job_id == 11


def test_from_batch_id_appends_with_update_fast() -> None:
    server = Recorder()
    backend = FakeBackend(server)
    try:
        b = Batch.from_batch_id(7, backend)
        b.new_job().command("true")
        b.submit()
    finally:
        backend.close()
    assert server.paths() == ["/api/v1/batches/7/update-fast"]


def test_an_empty_batch_cannot_run() -> None:
    backend = FakeBackend(Recorder())
    try:
        with pytest.raises(InvalidInput, match="no jobs"):
            Batch(backend=backend).submit()
    finally:
        backend.close()


def test_503_is_retried_and_4xx_raises_with_the_servers_message() -> None:
    server = Recorder()
    server.fail_first["/api/v1/batches/create-fast"] = 503
    backend = FakeBackend(server)
    try:
        b = Batch(backend=backend)
        b.new_job().command("true")
        b.submit()
        with pytest.raises(NotFound, match="no route /api/v1/batches/7/nope"):
            backend.client().run(backend.client().aio.request("GET", "/api/v1/batches/7/nope"))
    finally:
        backend.close()
    assert server.paths().count("/api/v1/batches/create-fast") == 2


async def test_a_non_idempotent_call_is_not_retried_after_it_may_have_arrived() -> None:
    calls = 0

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal calls
        calls += 1
        raise httpx.ReadError("reset")

    client = AsyncClient("http://corral.test", "t", transport=httpx.MockTransport(handler), backoff=0.001)
    with pytest.raises(ServerUnreachable):
        await client.create_user("ann")
    await client.aclose()
    assert calls == 1


async def test_error_bodies_become_corral_errors_with_field() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(
            400, json={"error": "InvalidInput", "message": "bunch[0].cpu: bad", "field": "bunch[0].cpu"}
        )

    async with AsyncClient("http://corral.test", "t", transport=httpx.MockTransport(handler)) as client:
        with pytest.raises(InvalidInput) as caught:
            await client.get_batch(1)
    assert caught.value.message == "bunch[0].cpu: bad" and caught.value.field == "bunch[0].cpu"


async def test_requests_carry_the_bearer_token() -> None:
    seen: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers["authorization"])
        return httpx.Response(200, json={"jobs": [], "last_job_id": None})

    async with AsyncClient("http://corral.test/", "secret", transport=httpx.MockTransport(handler)) as client:
        assert [j async for j in client.iter_jobs(3)] == []
    assert seen == ["Bearer secret"]
