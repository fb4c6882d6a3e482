"""parse_bunch: a well-formed bunch is read by pydantic's JSON reader, and accepts and refuses exactly what
the orjson path (orjson.loads, then validate_python) accepts and refuses, with the same values."""

from __future__ import annotations

import json
from typing import Any

import orjson
import pytest

from corral.api import jobspecs
from corral.api.jobspecs import parse_bunch
from corral.api.schemas import MAX_JOBS_PER_BUNCH
from corral.errors import InvalidInput

RICH = [
    {"job_id": 1, "process": {"type": "docker", "image": "ubuntu:24.04", "command": ["sh", "-c", "é ✓"],
                              "mystery": {"a": [1, 2.5, None]}},
     "resources": {"cpu": 0.5, "memory": "1Gi", "storage": "2Gi", "gpus": 1, "gpu_type": "a100", "z": 3},
     "env": [{"name": "A", "value": "1"}, {"name": "S", "value": "x", "secret": True}],
     "attributes": {"name": "first", "k": "v"}, "timeout": 12.5, "n_max_attempts": 3, "always_run": True,
     "input_files": [{"from": "file:///tmp/in", "to": "/io/in"}],
     "output_files": [{"from": "/io/out", "to": "file:///tmp/out"}],
     "service": {"port": 8080, "big": 2**70, "ratio": 0.1, "nested": [{"x": -0.0}]}, "pool": "p",
     "network": "private", "unknown_field": [True, {"deep": 1e300}]},
    {"job_id": 2, "process": {"command": ["true"]}, "in_update_parent_ids": [1], "absolute_parent_ids": [],
     "ready_parents": [{"job_id": 1, "placement": "same"}], "name": None},
]


def _orjson_path(body: bytes) -> list[Any]:
    return jobspecs._BUNCH.validate_python(orjson.loads(body))


def _refusal(body: bytes) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse_bunch(body)
    return caught.value


def test_a_well_formed_bunch_is_read_without_orjson_and_equals_the_orjson_path(
    monkeypatch: pytest.MonkeyPatch
) -> None:
    body = json.dumps(RICH).encode()  # orjson cannot write 2**70
    expected = _orjson_path(body)

    def no_orjson(_: bytes) -> Any:
        raise AssertionError("the fast path read the bunch with orjson")

    monkeypatch.setattr(orjson, "loads", no_orjson)
    got = parse_bunch(body)
    assert got == expected
    assert [j.model_dump() for j in got] == [j.model_dump() for j in expected]
    assert got[0].service is not None and type(got[0].service["big"]) is int  # not rounded to a float
    assert got[0].service["big"] == 2**70
    assert got[0].model_extra == {"unknown_field": [True, {"deep": 1e300}]}
    assert got[0].process.model_extra == {"mystery": {"a": [1, 2.5, None]}}


@pytest.mark.parametrize("fragment", [
    '"service": {"x": NaN}', '"service": {"x": [1, Infinity]}', '"service": {"x": -Infinity}',
    '"service": {"x": {"y": 1e400}}', '"anything": 1e400', '"timeout": 1e400',
], ids=["nan", "infinity", "-infinity", "overflow-in-service", "overflow-in-extra", "overflow-in-timeout"])
def test_numbers_json_has_not_are_refused_as_the_orjson_path_refuses_them(fragment: str) -> None:
    body = ('[{"job_id": 1, "process": {"command": ["true"]}, ' + fragment + "}]").encode()
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(body)  # what the orjson path does with it
    error = _refusal(body)
    assert error.field == "body"
    assert "not valid JSON" in str(error)


def test_bad_bunches_get_the_orjson_paths_messages() -> None:
    assert _refusal(b'{"job_id": 1}').field == "bunch"  # not a list
    assert _refusal(b"[1,]").field == "body"  # not JSON
    bad_field = _refusal(b'[{"job_id": 1, "process": {"command": ["true"]}, "n_max_attempts": 0}]')
    assert bad_field.field == "bunch[0].n_max_attempts"
    one = {"job_id": 1, "process": {"command": ["true"]}}
    too_many = _refusal(orjson.dumps([one] * (MAX_JOBS_PER_BUNCH + 1)))
    assert too_many.field == "bunch"
    assert f"at most {MAX_JOBS_PER_BUNCH}" in str(too_many)
