"""Jobs the stock client adds that need Hail's own image, and what runs instead in the process sandbox.

`b.run()` appends a `remove_tmpdir` job running `python3 -m hailtop.aiotools.delete <remote_tmpdir>`
in `hailgenetics/hailtop:<version>`. The sandbox has no hailtop and sees the host read-only, so the
job instead says in its log that the scratch directory is kept (until the container runtime and
image rewriting land, which run the real image)."""

from __future__ import annotations

import shlex

from corral.api.schemas import JobSpec

HAILTOP_DELETE = ["python3", "-m", "hailtop.aiotools.delete"]


def replace_hailtop_delete(job: JobSpec) -> bool:
    command = job.process.command
    if command[: len(HAILTOP_DELETE)] != HAILTOP_DELETE:
        return False
    targets = " ".join(command[len(HAILTOP_DELETE):])
    message = (
        f"corral: kept scratch {targets}: hailtop.aiotools.delete needs the {job.process.image} image, "
        "which this server runs in the process sandbox"
    )
    job.process.command = ["/bin/sh", "-c", f"echo {shlex.quote(message)}"]
    return True
