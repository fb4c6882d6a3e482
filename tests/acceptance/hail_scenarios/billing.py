"""Billing projects through the stock client's own calls: create, members, close (its batches refused),
reopen, spend limit edit and removal, delete (refused while open), and cost_breakdown on statuses."""

from __future__ import annotations

import os

from common import done, record
from hailtop.batch_client.client import BatchClient
from hailtop.httpx import ClientResponseError

IMAGE = "ubuntu:24.04"
admin = BatchClient("default", _token=os.environ["CORRAL_TEST_ADMIN_TOKEN"])
user = BatchClient("default").get_billing_project("default")["users"][0]
grants = BatchClient("grants")  # the user's client, billing to "grants"


def http_status(call) -> int:  # type: ignore[no-untyped-def]
    try:
        call()
    except ClientResponseError as err:
        return int(err.status)
    raise AssertionError("the request was accepted")


def run_one(client: BatchClient) -> dict:  # type: ignore[type-arg]
    b = client.create_batch()
    b.create_job(IMAGE, ["/bin/bash", "-c", "sleep 0.2"], resources={"cpu": "0.25", "memory": "standard"})
    b.submit()
    return dict(b.wait(disable_progress_bar=True))


assert admin.create_billing_project("grants") == "grants"
admin.add_user(user, "grants")
status = run_one(grants)
assert status["state"] == "success" and status["cost"] > 0, status
assert [line["resource"] for line in status["cost_breakdown"]] == ["cpu/site/1", "memory/site/1"], status
assert abs(sum(line["cost"] for line in status["cost_breakdown"]) - status["cost"]) < 1e-12
job = grants.get_job(status["id"], 1).status()
assert job["cost_breakdown"] and job["cost"] > 0, job
record("cost_breakdown", status["cost_breakdown"])

assert admin.edit_billing_limit("grants", 12.5) == {"billing_project": "grants", "limit": 12.5}
assert grants.get_billing_project("grants")["limit"] == 12.5
assert admin.edit_billing_limit("grants", None)["limit"] is None
assert http_status(lambda: admin.edit_billing_limit("grants", "lots")) == 400
assert http_status(lambda: grants.edit_billing_limit("grants", 1)) == 403  # not a developer

assert http_status(lambda: admin.delete_billing_project("grants")) == 409  # open: close it first
assert admin.close_billing_project("grants") == "grants"
assert grants.get_billing_project("grants")["status"] == "closed"
assert http_status(lambda: run_one(grants)) == 403  # a closed project takes no batches
assert admin.reopen_billing_project("grants") == "grants"
assert run_one(grants)["state"] == "success"
assert admin.close_billing_project("grants") == "grants"
assert admin.delete_billing_project("grants") == "grants"
assert "grants" not in [p["billing_project"] for p in admin.list_billing_projects()]
assert http_status(lambda: grants.get_billing_project("grants")) == 404
assert http_status(lambda: admin.reopen_billing_project("grants")) == 409  # deleted for good
record("lifecycle", "ok")
grants.close()
admin.close()
done()
