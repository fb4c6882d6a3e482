"""The pure rules of service jobs: spec parsing, templates, clients' environment, stop and placement."""

from __future__ import annotations

import pytest

from corral.domain.services import (
    Endpoint,
    client_spec,
    env_name,
    parse_service,
    placement_allows,
    port_env,
    render,
    services_to_stop,
)
from corral.errors import InvalidInput


def test_service_defaults_to_a_tcp_probe_on_its_first_port() -> None:
    spec = parse_service({"ports": ["http", "admin"]})
    assert [p.kind for p in spec.probes] == ["tcp"] and spec.probes[0].port == "http"
    assert (spec.ready_deadline, spec.grace_period) == (300.0, 10.0)


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"ports": []}, "service.ports"),
        ({"ports": ["a", "a"]}, "service.ports"),
        ({"probes": [{"kind": "http", "status": 999}]}, "service.probes[0].status"),
        ({"probes": [{"kind": "http", "path": "health"}]}, "service.probes[0].path"),
        ({"probes": [{"kind": "exec", "command": "redis-cli ping"}]}, "service.probes[0].command"),
        ({"grace_period": "10"}, "service.grace_period"),
        ({"failure_threshold": 0}, "service.failure_threshold"),
    ],
)
def test_bad_service_fields_are_named(raw: dict[str, object], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_service(raw)
    assert err.value.field == field


def test_templates_fill_ports_and_endpoints_and_leave_other_braces() -> None:
    ep = Endpoint("my-db", "10.0.0.5", {"main": 5432, "metrics": 9100}, "postgres")
    endpoints = {"my-db": ep}
    assert render("--port {port.main} ${HOME} {x}", ports={"main": 7}) == "--port 7 ${HOME} {x}"
    assert render("{service.my-db.url}", endpoints=endpoints) == "postgres://10.0.0.5:5432"
    assert render("{service.my-db.port.metrics} {service.my-db.host}", endpoints=endpoints) == "9100 10.0.0.5"
    assert render("{service.other.url}", endpoints=endpoints) == "{service.other.url}"


def test_client_env_and_spec_keep_the_template_for_a_later_endpoint() -> None:
    first = Endpoint("redis", "h1", {"main": 1})
    spec = client_spec(
        {"command": ["bash", "-c", "x {service.redis.url}"], "env": {"A": "{service.redis.host}"}},
        {"redis": first},
    )
    assert spec["command"] == ["bash", "-c", "x http://h1:1"]
    assert spec["env"]["CORRAL_SERVICE_REDIS_PORT_MAIN"] == "1" and spec["env"]["A"] == "h1"
    again = client_spec(spec, {"redis": Endpoint("redis", "h2", {"main": 2})})  # a retried service
    assert again["command"] == ["bash", "-c", "x http://h2:2"] and again["env"]["A"] == "h2"
    assert env_name("llm-server.v1") == "LLM_SERVER_V1"
    assert port_env({"main": 5, "b": 6}) == {
        "CORRAL_PORT_MAIN": "5",
        "CORRAL_PORT_B": "6",
        "CORRAL_PORT": "5",
    }


def test_service_stops_only_when_every_waiting_job_has_ended() -> None:
    waiting = {(1, 1): [(1, 2), (1, 3)], (1, 4): [(1, 5)]}
    assert services_to_stop(waiting, {(1, 2)}) == []
    assert services_to_stop(waiting, {(1, 2), (1, 3)}) == [(1, 1)]


def test_placement_rules() -> None:
    assert placement_allows("same", "i1", "i1") and not placement_allows("same", "i1", "i2")
    assert placement_allows("other", "i1", "i2") and not placement_allows("other", "i1", "i1")
    assert placement_allows(None, "i1", "i2")
