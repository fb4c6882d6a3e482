"""The `[images]` configuration section: cache, registries (credentials, insecure), rewrite table."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr


class RegistryConfig(BaseModel):
    """Settings for one registry host[:port], e.g. `[images.registries."127.0.0.1:5000"]`."""

    model_config = ConfigDict(extra="forbid")

    insecure: bool = False  # plain HTTP or unverified TLS: for registries on localhost/a lab network
    username: str | None = None
    password: SecretStr | None = None


class ImagesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cache_dir: Path | None = None  # default: <home>/images, shared by the workers of a machine
    cache_max_bytes: int = Field(default=20 * 1024**3, gt=0)
    # Prefix of a normalised reference -> replacement, e.g. {"docker.io/library/" = "mirror:5000/lib/"}.
    rewrite: dict[str, str] = Field(default_factory=dict)
    registries: dict[str, RegistryConfig] = Field(default_factory=dict)
    pull_attempts: int = Field(default=3, ge=1)  # tries when the registry is unreachable
    pull_retry_delay: float = Field(default=1.0, ge=0)  # doubled after each failed try
    pull_timeout: float = Field(default=600.0, gt=0)
    tag_check_interval: float = Field(default=300.0, ge=0)  # seconds before a cached tag is checked again
    oci_runtime: Literal["auto", "crun", "runc"] = "auto"  # auto: crun if it works here, else runc
    # Containers in a user namespace (image root = the job's unprivileged uid); false only where the
    # kernel cannot idmap the image cache's file system (then image root is host root: docs/jobs.md).
    user_namespace: bool = True

    def registry(self, host: str) -> RegistryConfig:
        return self.registries.get(host) or RegistryConfig()
