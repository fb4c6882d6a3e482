"""The `[jobs]` configuration section: what a job's sandbox lets it reach."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


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
