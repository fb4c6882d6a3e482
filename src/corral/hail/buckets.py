"""The `[buckets]` mapping: gs:// (and other cloud) bucket URLs the stock client writes, resolved to
storage the workers reach with fsspec.

`gs://corral-local/…` is Corral's own storage under the server home; other buckets come from the
TOML configuration, e.g. `[buckets] my-bucket = "s3://lab-bucket/prefix"` or `= "file:///data/x"`.
Job specs are rewritten when a Hail-compatible submission is accepted, so the worker's transfers see
plain URLs fsspec understands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from pydantic import AfterValidator

from corral.api.schemas import JobSpec
from corral.errors import InvalidInput

LOCAL_BUCKET = "corral-local"
CLOUD_SCHEMES = ("gs://", "s3://", "hail-az://", "https://")
_TARGET_SCHEMES = ("file://", "s3://", "gs://", "memory://")


def _check_target(value: str) -> str:
    if not value.startswith(_TARGET_SCHEMES) and not value.startswith("/"):
        raise ValueError(
            f"{value!r} is not a storage URL; map the bucket to file:///path, s3://bucket/prefix or an "
            "absolute path"
        )
    return "file://" + value if value.startswith("/") else value


BucketTarget = Annotated[str, AfterValidator(_check_target)]
BucketsConfig = dict[str, BucketTarget]


def local_bucket_root(home: Path) -> Path:
    return home / "buckets" / LOCAL_BUCKET


class BucketMap:
    """bucket name -> URL prefix; `resolve` rewrites one URL, `rewrite_job` all of a job's files."""

    def __init__(self, home: Path, configured: BucketsConfig) -> None:
        self.prefixes: dict[str, str] = {LOCAL_BUCKET: local_bucket_root(home).as_uri()}
        self.prefixes.update({name: target.rstrip("/") for name, target in configured.items()})

    def resolve(self, url: str, *, field: str) -> str:
        scheme = next((s for s in ("gs://", "s3://") if url.startswith(s)), None)
        if scheme is None:
            return url
        bucket, _, rest = url[len(scheme):].partition("/")
        target = self.prefixes.get(bucket)
        if target is None:
            if scheme == "s3://":
                return url  # real S3 through s3fs, when the worker has it configured
            raise InvalidInput(
                f"{field}: bucket {bucket!r} of {url!r} is not mapped; use gs://{LOCAL_BUCKET}/… or add "
                f'"{bucket}" to the [buckets] section of the server configuration',
                field=field,
            )
        return f"{target}/{rest}" if rest else target

    def rewrite_job(self, job: JobSpec, at: str) -> None:
        for i, f in enumerate(job.input_files):
            f.from_ = self.resolve(f.from_, field=f"{at}.input_files[{i}].from")
        for i, f in enumerate(job.output_files):
            f.to = self.resolve(f.to, field=f"{at}.output_files[{i}].to")
