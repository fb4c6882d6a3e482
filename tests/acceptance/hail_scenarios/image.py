"""A hailtop job with the client's default image (ubuntu:24.04), on a server whose workers run the oci
runtime and whose [images] rewrite table points that name at a local registry's image."""

from __future__ import annotations

from common import BUCKET, BUCKET_DIR, done, new_batch, record, run

b = new_batch("in-image")
j = b.new_job("marker")  # no j.image(): the client's default image
j.command(f"cat /etc/image-marker > {j.ofile}")
j.command(f"if test -e /etc/debian_version; then echo HOST-LEAK >> {j.ofile}; fi")
b.write_output(j.ofile, f"{BUCKET}/image/marker.txt")
batch = run(b)
status = batch.status()
assert status["state"] == "success", status
job = next(x for x in batch.jobs() if x["name"] == "marker")
full = batch.get_job(job["job_id"]).status()
record("image", {
    "marker": (BUCKET_DIR / "image/marker.txt").read_text(),
    "spec_image": full["spec"]["process"]["image"],
    "note": full["status"].get("note"),
})
done()
