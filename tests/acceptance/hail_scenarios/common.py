"""Shared by the scenario scripts, which run under the stock `hail` client's own virtualenv."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import hailtop.batch as hb

BUCKET = "gs://corral-local"
BUCKET_DIR = Path(os.environ["CORRAL_TEST_BUCKET_DIR"])  # where the server keeps gs://corral-local
RESULTS: dict[str, Any] = {}


def backend() -> hb.ServiceBackend:
    return hb.ServiceBackend(
        billing_project="default", remote_tmpdir=f"{BUCKET}/tmp", gcs_bucket_allow_list=["corral-local"]
    )


def new_batch(name: str, **kwargs: Any) -> hb.Batch:
    return hb.Batch(backend=backend(), name=name, **kwargs)


def run(b: hb.Batch, **kwargs: Any) -> Any:
    return b.run(disable_progress_bar=True, **kwargs)


def states(batch: Any) -> dict[str, str]:
    """job name -> state, through the client's own job listing (without the client's own
    remove_tmpdir job)."""
    return {j["name"]: j["state"] for j in batch.jobs() if j["name"] != "remove_tmpdir"}


def record(name: str, value: Any) -> None:
    RESULTS[name] = value


def done() -> None:
    json.dump(RESULTS, sys.stdout, default=str)
    sys.stdout.write("\n")
