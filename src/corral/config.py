"""Server settings: every option also comes from an environment variable CORRAL_<NAME>."""

from __future__ import annotations

import difflib
import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from corral.domain.billing.config import BillingConfig
from corral.errors import ConfigError
from corral.files.config import FilesConfig
from corral.hail.buckets import BucketsConfig
from corral.home import default_home
from corral.images.config import ImagesConfig
from corral.providers.config import InstanceCollectionConfig
from corral.runtimes.config import JobsConfig


class Settings(BaseSettings):
    """Precedence: explicit options > CORRAL_* variables > the TOML file at $CORRAL_CONFIG > defaults.

    Sections of the file (e.g. `[[instance_collections]]`, `[images]`, `[buckets]`) are fields here,
    each validated by its own pydantic model, so a typo is an error naming the key.
    """

    model_config = SettingsConfigDict(env_prefix="CORRAL_", extra="forbid")

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
                raise ConfigError(f"--config / CORRAL_CONFIG: no such file {config_file!r}", field="config")
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
    # seconds the group commit waits to gather state changes (not once every active instance has reported)
    commit_interval: float = 0.005
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

    @model_validator(mode="after")
    def _pool_is_served(self) -> Settings:
        # With collections configured and no local workers, a default pool that is none of them is a typo
        # (without collections, workers started by hand with `corral worker` serve the default pool).
        names = [c.name for c in self.instance_collections]
        if names and self.local_workers == 0 and self.pool not in names:
            raise ValueError(
                f"pool {self.pool!r} names no instance collection (they are: {', '.join(names)}) and "
                "local_workers is 0, so jobs of the default pool could never run"
            )
        return self

    @property
    def db_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.home / 'corral.db'}"

    @property
    def log_dir(self) -> Path:
        return self.home / "logs"

    @property
    def tokens_file(self) -> Path:
        return self.home / "tokens.json"


__all__ = ["Settings", "default_home", "load_settings"]


def load_settings(**options: Any) -> Settings:
    """Settings, with every way configuration can be wrong turned into one ConfigError naming the key
    (and the file): unknown keys, bad values, TOML syntax errors, a missing file."""
    source = os.environ.get("CORRAL_CONFIG")
    where = f" in {source}" if source else ""
    try:
        return Settings(**options)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except ValidationError as exc:
        err = exc.errors()[0]
        key = ".".join(str(p) for p in err["loc"]) or "(settings)"
        if err["type"] == "extra_forbidden":
            close = difflib.get_close_matches(key, list(Settings.model_fields), n=1)
            known = f"did you mean {close[0]!r}?" if close else "the settings are: " + ", ".join(
                sorted(Settings.model_fields)
            )
            message = f"unknown setting {key!r}{where}; {known}"
        else:
            message = f"setting {key}{where}: {err['msg'].removeprefix('Value error, ')}"
        more = len(exc.errors()) - 1
        raise ConfigError(message + (f" (and {more} more problems)" if more else ""), field=key) from None
