"""Server settings: every option also comes from an environment variable CORRAL_<NAME>."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from corral.domain.billing.config import BillingConfig
from corral.files.config import FilesConfig
from corral.hail.buckets import BucketsConfig
from corral.images.config import ImagesConfig
from corral.providers.config import InstanceCollectionConfig
from corral.runtimes.config import JobsConfig


def default_home() -> Path:
    return Path(os.environ.get("CORRAL_HOME", Path.home() / ".corral"))


class Settings(BaseSettings):
    """Precedence: explicit options > CORRAL_* variables > the TOML file at $CORRAL_CONFIG > defaults.

    Sections of the file (e.g. `[[instance_collections]]`, `[images]`, `[buckets]`) are fields here,
    each validated by its own pydantic model, so a typo is an error naming the key.
    """

    model_config = SettingsConfigDict(env_prefix="CORRAL_", extra="ignore")

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        config_file = os.environ.get("CORRAL_CONFIG")
        if config_file:
            if not Path(config_file).is_file():
                raise FileNotFoundError(f"CORRAL_CONFIG: no such file {config_file!r}")
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=Path(config_file)))
        return tuple(sources)

    home: Path = Field(default_factory=default_home)
    database_url: str | None = None  # default: SQLite at {home}/corral.db
    host: str = "127.0.0.1"
    port: int = 8642  # 0: any free port (the bound URL is written to url_file)
    url_file: Path | None = None
    local_workers: int = 1  # local worker processes started by the embedded server (0: none)
    local_worker_cores: float | None = None  # default: the machine's cores
    local_worker_memory: str | None = None  # default: the machine's memory
    local_worker_runtime: str = "process"  # process | noop | oci (containers for jobs with an image)
    pool: str = "default"
    # "cheapest": a job that names no pool goes to the cheapest pool that can start it soonest
    pool_choice: Literal["default", "cheapest"] = "default"
    commit_interval: float = 0.005  # seconds the group commit waits to gather state changes
    heartbeat_interval: float = 2.0
    heartbeat_timeout: float = 20.0  # an instance silent for this long is lost
    max_body_bytes: int = 64 * 1024 * 1024
    admin_user: str = "admin"
    default_user: str = Field(default_factory=lambda: os.environ.get("USER") or "corral")
    instance_collections: list[InstanceCollectionConfig] = Field(default_factory=list)
    # What a core-hour costs on instances whose shape names no price (the local workers): jobs' cost.
    cost_per_core_hour: float = Field(default=0.0, ge=0)
    billing: BillingConfig = Field(default_factory=BillingConfig)  # [billing]: rates (docs/billing.md)
    images: ImagesConfig = Field(default_factory=ImagesConfig)
    hail_compat_dir: Path | None = None  # serve HTTPS for the stock hailtop client; write its config here
    hail_user: str | None = None  # the user tokens.json in hail_compat_dir is for (default: default_user)
    buckets: BucketsConfig = Field(default_factory=dict)  # [buckets] name = "file:///…" | "s3://…"
    jobs: JobsConfig = Field(default_factory=JobsConfig)  # [jobs]: networks, what jobs see of the host
    files: FilesConfig = Field(default_factory=FilesConfig)  # [files]: where file:// URLs may point

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.home / 'corral.db'}"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def tokens_file(self) -> Path:
        return self.home / "tokens.json"
