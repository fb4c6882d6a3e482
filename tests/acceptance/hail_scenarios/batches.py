"""A batch over one bunch (> 1,024 jobs: create / jobs-create / commit), appending to a running batch
with Batch.from_batch_id, run(wait=False) then wait / status / jobs(q) in query languages v1 and v2,
log, attempts, cancel and delete."""

from __future__ import annotations

import time

import hailtop.batch as hb
from common import backend, done, new_batch, record, run
from hailtop.batch_client.client import BatchClient
from hailtop.httpx import ClientResponseError

# --- 1,030 jobs: more than one bunch, so the client takes create / jobs-create / commit. They are
# checked while they run and then cancelled (running them all would only test the worker again).
b = new_batch("large")
for i in range(1030):
    j = b.new_job(f"n{i}", attributes={"parity": "even" if i % 2 == 0 else "odd"})
    j.cpu(0.25)
    j.command("sleep 0.2")
started = time.monotonic()
large = run(b, wait=False)
submit_seconds = time.monotonic() - started
assert not large._async_batch._submission_info.used_fast_path  # the bunch path was taken
status = large.status()
assert status["n_jobs"] == 1030 and status["closed"], status
ids = sorted(j["job_id"] for j in large.jobs())
assert ids == list(range(1, 1031)), ids[:5]
evens = list(large.jobs(q="parity=even"))
assert len(evens) == 515 and all(j["job_id"] % 2 == 1 for j in evens)  # job i has id i+1
large.cancel()
status = large.wait(disable_progress_bar=True)
assert status["state"] == "cancelled" and status["n_completed"] == 1030, status
assert status["n_cancelled"] > 0 and status["n_succeeded"] + status["n_cancelled"] == 1030, status
record("large", {"succeeded": status["n_succeeded"], "cancelled": status["n_cancelled"],
                 "submit_seconds": round(submit_seconds, 2)})

# --- run(wait=False), then the client's own calls on the returned batch
b = new_batch("nowait")
first = b.new_job("first", attributes={"tag": "a"})
first.command("echo to-stdout; echo to-stderr >&2; exit 0")
blocker = b.new_job("blocker", attributes={"tag": "b"})
blocker.cpu(0.25)
blocker.command("sleep 300")
bad = b.new_job("bad", attributes={"tag": "b"})
bad.command("exit 7")
running = run(b, wait=False)
assert running.status()["state"] == "running"

# Batch.from_batch_id: append a job to the running batch, depending on a job of the first update
more = hb.Batch.from_batch_id(running.id, backend=backend())
extra = more.new_job("appended")
extra.command("echo appended")
more.run(disable_progress_bar=True, wait=False)
assert running.status()["n_jobs"] == 4

client = BatchClient("default")
first_id = next(j["job_id"] for j in running.jobs(q="tag=a"))
first_job = client.get_job(running.id, first_id)
first_job.wait()
log = first_job.log()
assert "to-stdout" in log["main"] and "to-stderr" in log["main"], log
attempts = first_job.attempts()
assert len(attempts) == 1 and attempts[0]["exit_code"] == 0, attempts
# query language v1: attribute, state, negation
assert {j["name"] for j in running.jobs(q="tag=b")} == {"blocker", "bad"}
# query language v2: one statement per line
async_batch = running._async_batch
wait_for_bad = client.get_job(running.id, next(j["job_id"] for j in running.jobs(q="name=bad")))
wait_for_bad.wait()
assert [j["name"] for j in running.jobs(q="bad")] == ["bad"]  # v1 state word
assert {j["name"] for j in running.jobs(q="tag=b !failed")} == {"blocker"}  # v1 negation
from hailtop.utils import async_to_blocking  # noqa: E402


async def v2_names(q: str) -> set[str]:
    return {j["name"] async for j in async_batch.jobs(q=q, version=2)}


assert async_to_blocking(v2_names("state = failed")) == {"bad"}
assert async_to_blocking(v2_names("tag = b\nstate != failed")) == {"blocker"}
assert async_to_blocking(v2_names("job_id >= 3")) == {"bad", "appended"}
assert async_to_blocking(v2_names("tag =~ ^[ab]$\njob_id < 2")) == {"first"}
try:
    async_to_blocking(v2_names("state ~~ failed"))
    raise AssertionError("a bad v2 query was accepted")
except ClientResponseError as err:
    assert err.status == 400, err
record("queries", "ok")

appended = client.get_job(running.id, 4)
assert appended.wait()["state"] == "Success"
assert "appended" in appended.log()["main"]

# cancel: the blocker is cancelled, the batch ends cancelled; then delete makes it 404
running.cancel()
final = running.wait(disable_progress_bar=True)
assert final["state"] == "cancelled", final
names = {j["name"]: j["state"] for j in running.jobs()}
assert names == {"first": "Success", "blocker": "Cancelled", "bad": "Failed", "appended": "Success"}, names
running.delete()
try:
    client.get_batch(running.id)
    raise AssertionError("a deleted batch is still visible")
except ClientResponseError as err:
    assert err.status == 404, err
listed = [bb.id for bb in client.list_batches(q="name=nowait")]
assert running.id not in listed
assert large.id in [bb.id for bb in client.list_batches(q="name=large")]
record("cancel_delete", names)
client.close()
done()
