"""The `[files]` configuration section: where `file://` inputs and outputs may point."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class FilesConfig(BaseModel):
    """`file://` URLs are refused unless under one of these roots (after resolving `..` and links).

    `allowed_roots` apply to everyone; `user_roots` / `billing_project_roots` add roots for one user or
    one billing project's batches. `{user}` in a root is replaced by the submitting user's name. None at
    all configured (the embedded default): the server account's home and working directory.
    """

    model_config = ConfigDict(extra="forbid")

    allowed_roots: list[str] | None = None  # None: the embedded default described above
    user_roots: dict[str, list[str]] = Field(default_factory=dict)
    billing_project_roots: dict[str, list[str]] = Field(default_factory=dict)
    # Where the server was started (the embedded default's working directory); set by `corral server`.
    working_dir: Path | None = None
