"""Every route of a real `corral server`, fuzzed from its own OpenAPI by schemathesis (bounded): no 5xx, and
every response a documented status with a documented body, on SQLite and on PostgreSQL, as the admin."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from tests.acceptance.harness import RunningServer
from tests.conftest import _clone_postgres, _drop_postgres

from corral.hail.compat_dir import ROUTE_PREFIX as HAIL_PREFIX

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 15  # per operation and store: about a minute for the whole table on this machine


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fuzzed_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A server without workers (the API is what is fuzzed), on a store of its own, with the
    Hail-compatible API on (it adds its routes, over TLS for the stock client and on the same app)."""
    home = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update({"CORRAL_HOME": str(home), "CORRAL_PORT": "0", "CORRAL_URL_FILE": str(home / "server.url"),
                "CORRAL_LOCAL_WORKERS": "0", "CORRAL_HAIL_COMPAT_DIR": str(home / "hail")})
    dsn = db_url = None
    if request.param == "postgres":
        dsn = request.getfixturevalue("postgres_template")
        db_url = asyncio.run(_clone_postgres(dsn))
        env["CORRAL_DATABASE_URL"] = db_url
    server = RunningServer(home, env)
    server.start()
    yield server
    server.stop()
    if dsn and db_url:
        asyncio.run(_drop_postgres(dsn, db_url))


def fuzz_operations(server: RunningServer, wanted: Callable[[str], bool]) -> dict[str, str]:
    """Fuzz every operation whose path `wanted` accepts; the failures by operation."""
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    failures: dict[str, str] = {}
    for result in schema.get_all_operations():
        operation = result.ok()
        if not wanted(operation.path):
            continue

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def fuzz(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis reports a FailureGroup
            failures[operation.label] = str(exc)[:1200]
    return failures


def _hail(path: str) -> bool:
    return "/api/v1alpha/" in path or "/api/v2alpha/" in path


def test_no_route_answers_5xx_or_off_its_schema(fuzzed_server: RunningServer) -> None:
    failures = fuzz_operations(fuzzed_server, lambda path: not _hail(path))
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def test_no_hail_route_answers_5xx_or_off_its_schema(fuzzed_server: RunningServer) -> None:
    """The Hail-compatible routes, where the stock client sends them (/hail/batch/api/...; the same
    handlers are mounted at /api/v1alpha too). A 4xx names the field at fault (the Error body's
    `field`, checked by the schema: it is required)."""
    failures = fuzz_operations(
        fuzzed_server, lambda path: _hail(path) and path.startswith(HAIL_PREFIX)
    )
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())


def _job(job_id: int, **extra: Any) -> dict[str, Any]:
    return {"job_id": job_id, "process": {"type": "docker", "command": ["true"]}, **extra}


def _create_fast(token: str, groups: Any, bunch: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    jobs = bunch if bunch is not None else [_job(1, in_update_job_group_id=1)]
    batch = {"billing_project": "default", "token": token, "n_jobs": len(jobs)}
    return {"batch": batch, "bunch": jobs, "job_groups": groups}


# Inputs the generator may miss: numbers beyond the 32-bit columns (PostgreSQL's int4 refuses them),
# text beyond the limits, wrong shapes. Each is a 400 naming the field, on both stores.
HOSTILE_HAIL = [
    ("batches/create-fast", _create_fast("h1", [{"job_group_id": 1, "cancel_after_n_failures": 2**40}]),
     "job_groups[0].cancel_after_n_failures"),
    ("batches/create-fast", _create_fast("h2", [{"job_group_id": 2**40}]), "job_groups[0].job_group_id"),
    ("batches/create-fast", _create_fast("h3", [{"job_group_id": 1, "in_update_parent_id": 2**40}]),
     "job_groups[0].in_update_parent_id"),
    ("batches/create-fast", _create_fast("h4", [{"job_group_id": 1, "callback": "x" * 5000}]),
     "job_groups[0].callback"),
    ("batches/create-fast", _create_fast("h5", [{"job_group_id": 1, "attributes": {"k" * 300: "v"}}]),
     "job_groups[0].attributes"),
    ("batches/create-fast", _create_fast("h6", {"not": "a list"}), "job_groups"),
    ("batches/create-fast", _create_fast("h7", [], [_job(1, in_update_job_group_id=2**40)]),
     "bunch[0].in_update_job_group_id"),
    ("batches/create-fast", [1, 2], "body"),
]


def test_hostile_hail_bodies_are_400s_naming_the_field(fuzzed_server: RunningServer) -> None:
    with fuzzed_server.client(fuzzed_server.admin_token) as c:
        before = c.get("/api/v1/batches").json()
        for path, body, field in HOSTILE_HAIL:
            r = c.post(f"{HAIL_PREFIX}/api/v1alpha/{path}", json=body)
            assert r.status_code == 400, (field, r.status_code, r.text)
            assert r.json()["field"].startswith(field), (field, r.text)
        r = c.post(f"{HAIL_PREFIX}/api/v1alpha/billing_limits/default/edit", json={"limit": "lots"})
        assert r.status_code == 400 and r.json()["field"] == "limit", r.text
        assert c.get("/api/v1/batches").json() == before  # nothing was stored
