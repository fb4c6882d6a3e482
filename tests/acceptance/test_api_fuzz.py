"""Every route of a real `corral server`, fuzzed from its own OpenAPI by schemathesis (bounded): no 5xx, and
every response a documented status with a documented body, on SQLite and on PostgreSQL, as the admin."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
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

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 15  # per operation and store: about a minute for the whole table on this machine


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def fuzzed_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    """A server without workers (the API is what is fuzzed), on a store of its own."""
    home = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update({"CORRAL_HOME": str(home), "CORRAL_PORT": "0", "CORRAL_URL_FILE": str(home / "server.url"),
                "CORRAL_LOCAL_WORKERS": "0"})
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


def test_no_route_answers_5xx_or_off_its_schema(fuzzed_server: RunningServer) -> None:
    schema = schemathesis.openapi.from_url(f"{fuzzed_server.url}/openapi.json")
    headers = {"Authorization": f"Bearer {fuzzed_server.admin_token}"}
    failures: dict[str, str] = {}
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        def fuzz(case: Any) -> None:
            case.call_and_validate(headers=headers, checks=CHECKS)

        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as exc:  # schemathesis reports a FailureGroup
            failures[operation.label] = str(exc)[:1200]
    assert not failures, "\n\n".join(f"{label}:\n{text}" for label, text in failures.items())
