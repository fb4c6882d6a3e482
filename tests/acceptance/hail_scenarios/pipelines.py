"""hailtop.batch pipelines run with b.run(): files, resource groups, scatter-gather, failures,
always_run, cancel_after_n_failures, timeout, env and attributes, always_copy_output."""

from __future__ import annotations

from common import BUCKET, BUCKET_DIR, done, new_batch, record, run, states

# --- a single job, its output written to the mapped bucket
b = new_batch("single")
j = b.new_job("hello")
j.command(f"echo hello from corral > {j.ofile}")
b.write_output(j.ofile, f"{BUCKET}/single/hello.txt")
status = run(b).status()
assert status["state"] == "success", status
assert (BUCKET_DIR / "single/hello.txt").read_text() == "hello from corral\n"
record("single", status["state"])

# --- resource files and resource groups with read_input / write_output
(BUCKET_DIR / "inputs").mkdir(parents=True, exist_ok=True)
(BUCKET_DIR / "inputs/words.txt").write_text("b\nc\na\n")
(BUCKET_DIR / "inputs/ref.fa").write_text(">chr1\nACGT\n")
(BUCKET_DIR / "inputs/ref.fa.fai").write_text("chr1\t4\n")
b = new_batch("files")
words = b.read_input(f"{BUCKET}/inputs/words.txt")
ref = b.read_input_group(fa=f"{BUCKET}/inputs/ref.fa", fai=f"{BUCKET}/inputs/ref.fa.fai")
sort = b.new_job("sort")
sort.command(f"sort {words} > {sort.sorted}")
index = b.new_job("index")
index.declare_resource_group(out={"bed": "{root}.bed", "txt": "{root}.txt"})
index.command(f"cut -f2 {ref.fai} > {index.out.bed}; cat {ref.fa} {sort.sorted} > {index.out.txt}")
b.write_output(sort.sorted, f"{BUCKET}/files/sorted.txt")
b.write_output(index.out, f"{BUCKET}/files/indexed")
status = run(b).status()
assert status["state"] == "success", status
assert (BUCKET_DIR / "files/sorted.txt").read_text() == "a\nb\nc\n"
assert (BUCKET_DIR / "files/indexed.bed").read_text() == "4\n"
assert (BUCKET_DIR / "files/indexed.txt").read_text() == ">chr1\nACGT\na\nb\nc\n"
record("files", "ok")

# --- scatter-gather of 50
b = new_batch("scatter")
parts = []
for i in range(50):
    s = b.new_job(f"scatter-{i}")
    s.cpu(0.25)
    s.command(f"echo {i} > {s.part}")
    parts.append(s.part)
g = b.new_job("gather")
g.command(f"cat {' '.join(str(p) for p in parts)} | sort -n | paste -sd+ | bc > {g.total}")
b.write_output(g.total, f"{BUCKET}/scatter/total.txt")
scatter = run(b)
status = scatter.status()
# 50 + gather + the client's remove_tmpdir job
assert status["n_jobs"] == 52 and status["n_succeeded"] == 52, status
tmp_job = next(j for j in scatter.jobs() if j["name"] == "remove_tmpdir")
assert "kept scratch" in scatter.get_job(tmp_job["job_id"]).log()["main"], tmp_job
assert tmp_job["state"] == "Success", tmp_job
assert (BUCKET_DIR / "scatter/total.txt").read_text().strip() == str(sum(range(50)))
record("scatter", status["n_succeeded"])

# --- a failing job: its child is cancelled, an always_run child still runs
b = new_batch("failure")
bad = b.new_job("bad")
bad.command("echo about to fail; exit 3")
child = b.new_job("child")
child.depends_on(bad)
child.command("echo never")
cleanup = b.new_job("cleanup")
cleanup.always_run()
cleanup.depends_on(bad)
cleanup.command("echo cleaning up")
batch = run(b)
status = batch.status()
found = states(batch)
assert status["state"] == "failure", status
assert found == {"bad": "Failed", "child": "Cancelled", "cleanup": "Success"}, found
bad_job = next(j for j in batch.jobs() if j["name"] == "bad")
assert bad_job["exit_code"] == 3, bad_job
record("failure", found)

# --- cancel_after_n_failures: after 1 failure the batch is cancelled, its other jobs with it
b = new_batch("cancel-after", cancel_after_n_failures=1)
first = b.new_job("fails")
first.command("exit 1")
for i in range(3):
    waiter = b.new_job(f"waits-{i}")
    waiter.command("sleep 120")
batch = run(b)
status = batch.status()
found = states(batch)
assert status["state"] == "cancelled", status
assert found == {"fails": "Failed", **{f"waits-{i}": "Cancelled" for i in range(3)}}, found
record("cancel_after_n_failures", found)

# --- timeout -> Error; env and attributes; always_copy_output
b = new_batch("misc", attributes={"project": "compat"})
slow = b.new_job("slow", attributes={"kind": "slow"})
slow.timeout(2)
slow.command("sleep 60")
env = b.new_job("env", attributes={"kind": "env"})
env.env("GREETING", "bonjour")
env.command(f'echo "$GREETING" > {env.ofile}')
b.write_output(env.ofile, f"{BUCKET}/misc/greeting.txt")
keep = b.new_job("keep")
keep.always_copy_output()
keep.command(f"echo partial > {keep.ofile}; exit 5")
b.write_output(keep.ofile, f"{BUCKET}/misc/partial.txt")
batch = run(b)
status = batch.status()
found = states(batch)
assert found == {"slow": "Error", "env": "Success", "keep": "Failed"}, found
assert status["attributes"]["project"] == "compat", status
assert (BUCKET_DIR / "misc/greeting.txt").read_text() == "bonjour\n"
assert (BUCKET_DIR / "misc/partial.txt").read_text() == "partial\n"
slow_status = next(j for j in batch.jobs() if j["name"] == "slow")
env_job = batch.get_job(next(j["job_id"] for j in batch.jobs() if j["name"] == "env"))
full = env_job.status()
assert full["attributes"] == {"kind": "env", "name": "env"}, full["attributes"]
steps = full["status"]["container_statuses"]
assert set(steps) == {"input", "main", "output"}, steps
assert steps["main"]["exit_code"] == 0 and steps["main"]["timing"]["duration_ms"] is not None, steps
record("misc", {"found": found, "slow": slow_status["state"], "note": full["status"].get("note")})
done()
