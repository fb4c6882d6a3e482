"""The `[jobs]` configuration section: what a job's sandbox lets it reach."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from corral.domain.resources import parse_bytes
from corral.errors import InvalidInput

# The host runtime (runtimes/host.py): said on every instance that uses it, and when it is refused.
HOST_ISOLATION = (
    "host runtime: jobs run unsandboxed as the worker's user on the host's filesystem and network "
    "(cgroup limits and kill-the-tree only)"
)
HOST_REFUSED = (
    "the host runtime runs jobs without a sandbox (as the worker's user, on the host's filesystem and "
    "network); it is for trusted single-user machines and is off unless the site sets "
    "`[jobs] allow_host_runtime = true` (or CORRAL_JOBS='{\"allow_host_runtime\": true}')"
)


class JobsConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # A job that names no network gets this one. "private": its own namespace with NAT to the outside,
    # no route to the host's loopback (the API, databases, the worker).
    default_network: Literal["none", "private", "public"] = "private"
    # Opt-in: `public` jobs share the host's network (its loopback services included). Off: `public`
    # is NAT like `private`.
    host_network: bool = False
    # The embedded default (workers started by `corral server` on the user's own machine): jobs see the
    # server user's active venv/conda and working directory read-only, with its PATH. Multi-user sites
    # whose server account is not a user turn this off.
    share_user_environment: bool = True
    # More host paths every job sees read-only (e.g. a shared software tree under a closed directory).
    visible_paths: list[Path] = Field(default_factory=list)
    # Opt-in, for trusted single-user machines only: workers may use the `host` runtime, which runs jobs
    # as the worker's own user on the host's filesystem and network (cgroup limits and kill-the-tree,
    # no sandbox). The server refuses host workers unless its own settings say so; a worker refuses to
    # start the runtime unless its settings say so.
    allow_host_runtime: bool = False
    # /io and /tmp of a job that requests no `storage` are bounded by a volume of this size (bytes or
    # "10Gi"); filling it fails the job with "No space left", never the host's disk. 0: unbounded.
    default_storage: int = 10 * 1024**3

    @field_validator("default_storage", mode="before")
    @classmethod
    def _size(cls, value: object) -> int:
        try:
            return parse_bytes(value, field="default_storage")  # type: ignore[arg-type]
        except InvalidInput as exc:
            raise ValueError(exc.message) from None
