"""Shared billing projects, stated: who may see, cancel, append to and delete a batch — as a matrix.

Owner and admin: everything. Members of the batch's billing project: see it (jobs, logs) and cancel it,
with env values marked secret "[redacted]" (everyone but the owner). Outsiders: 404.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from tests.acceptance.harness import RunningServer, job
from tests.security.conftest import Attacker, new_user

SECRET = "s3cr3t-" + uuid.uuid4().hex


@pytest.fixture(scope="module")
def people(server: RunningServer) -> Iterator[dict[str, str]]:
    project = f"shared-{uuid.uuid4().hex[:6]}"
    with server.client(server.admin_token) as c:
        assert c.post("/api/v1/billing-projects", json={"name": project}).status_code == 200
    owner = new_user(server, project=project)
    member = new_user(server, project=project)
    outsider: Attacker = new_user(server)
    yield {"project": project, "owner": owner.token, "member": member.token, "outsider": outsider.token,
           "admin": server.admin_token}


def _owned_batch(server: RunningServer, people: dict[str, str]) -> int:
    spec = job("echo token=$API_TOKEN", 1, env=[{"name": "API_TOKEN", "value": SECRET, "secret": True},
                                                {"name": "PLAIN", "value": "visible"}])
    batch_id = server.submit([spec], token=people["owner"], billing_project=people["project"])
    deadline = time.monotonic() + 120
    with server.client(people["owner"]) as c:
        while not c.get(f"/api/v1/batches/{batch_id}").json()["complete"]:
            assert time.monotonic() < deadline, f"batch {batch_id} did not complete"
            time.sleep(0.05)
    return batch_id


def _act(server: RunningServer, token: str, batch_id: int, action: str) -> tuple[int, Any]:
    with server.client(token) as c:
        if action == "see":
            r = c.get(f"/api/v1/batches/{batch_id}")
        elif action == "log":
            r = c.get(f"/api/v1/batches/{batch_id}/jobs/1/log/main")
            return r.status_code, r.text
        elif action == "append":
            body = {"update": {"token": uuid.uuid4().hex, "n_jobs": 1}, "bunch": [job("true", 1)]}
            r = c.post(f"/api/v1/batches/{batch_id}/update-fast", json=body)
        elif action == "cancel":
            r = c.patch(f"/api/v1/batches/{batch_id}/cancel")
        else:
            r = c.delete(f"/api/v1/batches/{batch_id}")
    is_json = r.headers.get("content-type", "").startswith("application/json")
    return r.status_code, r.json() if is_json else r.text


MATRIX = {  # action -> status for owner, member, outsider, admin
    "see": (200, 200, 404, 200),
    "log": (200, 200, 404, 200),
    "append": (200, 403, 404, 200),
    "cancel": (200, 200, 404, 200),
    "delete": (200, 403, 404, 200),
}
ACTORS = ("owner", "member", "outsider", "admin")


@pytest.mark.parametrize("action", list(MATRIX))
def test_billing_project_access_matrix(server: RunningServer, people: dict[str, str], action: str) -> None:
    for actor, expected in zip(ACTORS, MATRIX[action], strict=True):
        batch_id = _owned_batch(server, people)
        code, body = _act(server, people[actor], batch_id, action)
        assert code == expected, (action, actor, code, body)
        if action == "log" and code == 200:
            assert (SECRET in body) == (actor == "owner"), (actor, body)
            assert ("[redacted]" in body) == (actor != "owner"), (actor, body)
        if action in ("append", "delete") and code == 403:
            assert "owner" in body["message"], body
            with server.client(people["owner"]) as c:  # a refused delete left the batch in place
                assert c.get(f"/api/v1/batches/{batch_id}").status_code == 200
                assert c.get(f"/api/v1/batches/{batch_id}").json()["n_jobs"] == 1


def test_secret_env_values_are_redacted_from_everyone_but_the_owner(
    server: RunningServer, people: dict[str, str]
) -> None:
    batch_id = _owned_batch(server, people)
    for actor in ("owner", "member", "admin"):
        with server.client(people[actor]) as c:
            r = c.get(f"/api/v1/batches/{batch_id}/jobs/1")
        assert r.status_code == 200, r.text
        text = r.text
        assert (SECRET in text) == (actor == "owner"), (actor, text)
        assert "visible" in text  # only values marked secret are hidden
