"""Request bodies of the Hail routes that read their JSON themselves (orjson, with the garbage collector
paused, or with job groups beside the jobs), declared in the OpenAPI so clients and the fuzz tests know
what to send."""

from __future__ import annotations

from typing import Any

from corral.hail.job_groups import JobGroupSpec


def _body(schema: dict[str, Any]) -> dict[str, Any]:
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": schema}}}}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


_GROUPS = {"type": "array", "items": JobGroupSpec.model_json_schema()}


def _with_groups(model: str) -> dict[str, Any]:
    return {"allOf": [_ref(model), {"type": "object", "properties": {"job_groups": _GROUPS}}]}


CREATE_FAST = _body(_with_groups("CreateFastRequest"))
UPDATE_FAST = _body(_with_groups("UpdateFastRequest"))
BUNCH = _body({"type": "array", "items": _ref("JobSpec")})
JOB_GROUPS = _body(_GROUPS)
SPEND_LIMIT = _body({
    "type": "object",
    "required": ["limit"],
    "properties": {"limit": {"anyOf": [{"type": "number", "minimum": 0}, {"type": "null"}]}},
})
