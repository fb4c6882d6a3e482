"""The client's BatchClient used directly: ports of Hail's own DAG tests, job groups (nested, cancelled
as a group, counts rolled up), billing project calls, and clear 4xx answers for bad requests."""

from __future__ import annotations

import os

import orjson
from common import BUCKET, BUCKET_DIR, done, record
from hailtop.batch_client.client import BatchClient
from hailtop.httpx import ClientResponseError
from hailtop.utils import async_to_blocking

IMAGE = "ubuntu:24.04"
client = BatchClient("default")
admin = BatchClient("default", _token=os.environ["CORRAL_TEST_ADMIN_TOKEN"])


def bash(batch, script, **kwargs):  # type: ignore[no-untyped-def]
    kwargs.setdefault("resources", {"cpu": "0.25", "memory": "standard"})
    return batch.create_job(IMAGE, ["/bin/bash", "-c", script], **kwargs)


def state(job) -> str:  # type: ignore[no-untyped-def]
    return str(job.status()["state"])


def http_status(call) -> int:  # type: ignore[no-untyped-def]
    try:
        call()
    except ClientResponseError as err:
        return int(err.status)
    raise AssertionError("the request was accepted")


# --- test_simple and test_dag
b = client.create_batch()
head = bash(b, "echo head")
left = bash(b, "echo left", parents=[head])
right = bash(b, "echo right", parents=[head])
tail = bash(b, "echo tail", parents=[left, right])
b.submit()
status = b.wait(disable_progress_bar=True)
assert status["state"] == "success" and status["n_succeeded"] == 4, status
ended = {j.job_id: j.attempts()[0] for j in (head, left, right, tail)}
last_parent_end = max(ended[left.job_id]["end_time"], ended[right.job_id]["end_time"])
assert ended[tail.job_id]["start_time"] >= last_parent_end, ended
assert tail.log()["main"] == "tail\n"
record("dag", "ok")

# --- test_cancel_tail: cancelling while the tail runs cancels only the tail
b = client.create_batch()
head = bash(b, "echo head")
left = bash(b, "echo left", parents=[head])
right = bash(b, "echo right", parents=[head])
tail = bash(b, "sleep 300", parents=[left, right])
b.submit()
left.wait()
right.wait()
b.cancel()
b.wait(disable_progress_bar=True)
assert [state(j) for j in (head, left, right, tail)] == ["Success", "Success", "Success", "Cancelled"]

# --- test_cancel_left_after_tail
b = client.create_batch()
head = bash(b, "echo head")
left = bash(b, "sleep 300", parents=[head])
right = bash(b, "echo right", parents=[head])
tail = bash(b, "echo tail", parents=[left, right])
b.submit()
head.wait()
right.wait()
b.cancel()
b.wait(disable_progress_bar=True)
assert [state(j) for j in (head, left, right, tail)] == ["Success", "Cancelled", "Success", "Cancelled"]

# --- test_always_run_cancel and test_always_run_error
b = client.create_batch()
head = bash(b, "echo head")
left = bash(b, "sleep 300", parents=[head])
right = bash(b, "echo right", parents=[head], always_run=True)
tail = bash(b, "echo tail", parents=[left, right], always_run=True)
b.submit()
right.wait()
b.cancel()
b.wait(disable_progress_bar=True)
assert [state(j) for j in (head, left, right, tail)] == ["Success", "Cancelled", "Success", "Success"]
b = client.create_batch()
head = bash(b, "exit 1")
tail = bash(b, "echo tail", parents=[head], always_run=True)
b.submit()
status = b.wait(disable_progress_bar=True)
assert status["state"] == "failure" and [state(head), state(tail)] == ["Failed", "Success"], status
record("cancel_and_always_run", "ok")

# --- test_input_dependency and test_input_dependency_directory (files through the bucket mapping)
b = client.create_batch()
head = bash(b, "mkdir -p /io/dir; echo head1 > /io/data1; echo head2 > /io/data2; echo d > /io/dir/inner",
            output_files=[("/io/data1", f"{BUCKET}/dep/data1"), ("/io/data2", f"{BUCKET}/dep/data2"),
                          ("/io/dir", f"{BUCKET}/dep/dir")])
tail = bash(b, "cat /io/data1 /io/data2 /io/dir/inner", parents=[head],
            input_files=[(f"{BUCKET}/dep/data1", "/io/data1"), (f"{BUCKET}/dep/data2", "/io/data2"),
                         (f"{BUCKET}/dep/dir", "/io/dir")])
b.submit()
status = b.wait(disable_progress_bar=True)
assert status["state"] == "success", status
assert tail.log()["main"] == "head1\nhead2\nd\n", tail.log()
assert (BUCKET_DIR / "dep/dir/inner").read_text() == "d\n"
steps = tail.status()["status"]["container_statuses"]
assert steps["input"]["exit_code"] == 0 and steps["input"]["timing"]["duration_ms"] is not None, steps
record("input_dependency", "ok")


# --- missing parent -> 400; parents in other batches refused (client side and server side)
def post(path: str, body: object) -> object:
    return async_to_blocking(client._async_client._post(path, data=orjson.dumps(body)))


spec = {"billing_project": "default", "token": "missing-parent", "n_jobs": 1}
job = {"job_id": 1, "process": {"type": "docker", "image": IMAGE, "command": ["true"]},
       "in_update_parent_ids": [10000], "absolute_parent_ids": []}
assert http_status(lambda: post("/api/v1alpha/batches/create-fast", {"batch": spec, "bunch": [job]})) == 400
other = client.create_batch()
other_job = bash(other, "true")
other.submit()
b = client.create_batch()
try:
    bash(b, "true", parents=[other_job])
    raise AssertionError("a parent from another batch was accepted by the client")
except ValueError as err:
    assert "another batch" in str(err)
target = client.create_batch()
bash(target, "true")
target.submit()
update = {"update": {"n_jobs": 1, "token": "foreign"}, "job_groups": [],
          "bunch": [{**job, "in_update_parent_ids": [], "absolute_parent_ids": [5]}]}
assert http_status(lambda: post(f"/api/v1alpha/batches/{target.id}/update-fast", update)) == 400
record("dag_errors", "ok")

# --- job groups: nested, cancelled as a group, counts rolled up
b = client.create_batch(attributes={"name": "groups"})
outer = b.create_job_group(attributes={"name": "outer"})
inner = outer.create_job_group(attributes={"name": "inner"})
top = bash(b, "echo top")
quick = outer.create_job(IMAGE, ["/bin/bash", "-c", "echo quick"], resources={"cpu": "0.25"})
slow = inner.create_job(IMAGE, ["/bin/bash", "-c", "sleep 300"], resources={"cpu": "0.25"})
b.submit()
assert (outer.job_group_id, inner.job_group_id) == (1, 2)
quick.wait()
assert [g.job_group_id for g in b.job_groups()] == [1]
assert [g.job_group_id for g in outer.job_groups()] == [2]
assert sorted(j["job_id"] for j in outer.jobs(recursive=True)) == sorted([quick.job_id, slow.job_id])
assert [j["job_id"] for j in outer.jobs()] == [quick.job_id]
outer_status = outer.status()
assert outer_status["n_jobs"] == 2 and outer_status["complete"] is False, outer_status
inner.cancel()
inner_status = inner.wait(disable_progress_bar=True)
assert inner_status["state"] == "cancelled" and inner_status["n_cancelled"] == 1, inner_status
outer_status = outer.wait(disable_progress_bar=True)
assert outer_status["n_jobs"] == 2 and outer_status["n_succeeded"] == 1 and outer_status["n_cancelled"] == 1
status = b.wait(disable_progress_bar=True)
assert status["n_jobs"] == 3 and status["n_succeeded"] == 2 and status["n_cancelled"] == 1, status
assert state(top) == "Success" and state(slow) == "Cancelled"
assert http_status(lambda: b.get_job_group(99).status()) == 404
# an update appends a job to an existing group and a new group below it (absolute ids)
late = b.get_job_group(1).create_job(IMAGE, ["true"], resources={"cpu": "0.25"})
newest = b.get_job_group(1).create_job_group(attributes={"name": "newest"})
later = newest.create_job(IMAGE, ["true"], resources={"cpu": "0.25"})
b.submit()
assert newest.job_group_id == 3 and later.wait()["state"] == "Success" and late.wait()["state"] == "Success"
assert outer.status()["n_jobs"] == 4 and sorted(g.job_group_id for g in outer.job_groups()) == [2, 3]
record("job_groups", outer.status())

# a job group's cancel_after_n_failures cancels that group only
b = client.create_batch()
strict = b.create_job_group(cancel_after_n_failures=1)
failing = strict.create_job(IMAGE, ["/bin/bash", "-c", "exit 1"], resources={"cpu": "0.25"})
sleeper = strict.create_job(IMAGE, ["/bin/bash", "-c", "sleep 300"], resources={"cpu": "0.25"})
bystander = bash(b, "sleep 1")
b.submit()
status = b.wait(disable_progress_bar=True)
assert [state(failing), state(sleeper), state(bystander)] == ["Failed", "Cancelled", "Success"], status
assert strict.status()["state"] == "cancelled"
record("group_cancel_after_n_failures", "ok")

# --- billing projects through the client's calls
project = client.get_billing_project("default")
assert project["billing_project"] == "default" and project["status"] == "open", project
assert [p["billing_project"] for p in client.list_billing_projects()] == ["default"]
assert http_status(lambda: client.create_billing_project("lab")) == 403  # not a developer
admin.create_billing_project("lab")
user = project["users"][0]
admin.add_user(user, "lab")
assert user in client.get_billing_project("lab")["users"]
admin.remove_user(user, "lab")
assert http_status(lambda: client.get_billing_project("lab")) == 404
assert admin.close_billing_project("lab") == "lab"  # more of the lifecycle: hail_scenarios/billing.py
assert client.default_region() == "local" and client.supported_regions() == ["local"]
record("billing", "ok")

# --- what the server does not know answers 4xx, never 5xx
assert http_status(lambda: async_to_blocking(client._async_client._get("/api/v1alpha/no-such-thing"))) == 404
assert http_status(lambda: client.get_job(b.id, 999)) == 404
assert http_status(lambda: post("/api/v1alpha/batches/create-fast", {"batch": {}})) == 400
record("errors", "ok")
client.close()
admin.close()
done()
