"""The `provider_options` of a vastai instance collection. Example:

[[instance_collections]]
name = "gpu"
provider = "vastai"
shape = { cores = 4, memory = "16Gi", gpus = 1, gpu_type = "RTX 4090" }   # what a job may ask for
max_instances = 4
idle_seconds = 300
[instance_collections.provider_options]
api_key_file = "~/.config/vastai/vast_api_key"    # or api_key_env = "VAST_API_KEY" (never logged)
image = "pytorch/pytorch:2.4.0-cuda12.4-cudnn9-runtime"
disk_gb = 40
interruptible = false        # true: bid at min_bid x (1 + bid_margin); preemptible, cheaper
max_price_per_hour = 0.6     # one instance
max_total_per_hour = 2.0     # the budget: every instance of this collection together
ssh_key = "~/.ssh/id_ed25519"  # its .pub is added to the account's keys
[instance_collections.provider_options.filters]
gpu_name = ["RTX 4090", "RTX 3090"]
gpu_ram_gb = 24
cuda_version = 12.1
reliability = 0.98
inet_down_mbps = 200
verified = true
geolocation = ["NO", "DE", "CA"]
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from corral.errors import InvalidInput


class OfferFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    gpu_name: list[str] | None = None  # default: the shape's gpu_type, if any
    num_gpus: int | None = Field(default=None, ge=1)  # default: the shape's gpus
    gpu_ram_gb: float | None = Field(default=None, gt=0)
    cuda_version: float | None = Field(default=None, gt=0)  # cuda_max_good >= this
    disk_gb: float | None = Field(default=None, gt=0)  # default: provider_options.disk_gb
    reliability: float | None = Field(default=0.95, ge=0, le=1)  # reliability2 >= this
    inet_down_mbps: float | None = Field(default=None, ge=0)
    verified: bool | None = True
    geolocation: list[str] | None = None  # country codes
    direct_port_count: int | None = Field(default=None, ge=0)
    extra: dict[str, dict[str, Any]] = Field(default_factory=dict)  # raw {field: {op: value}}


class VastOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = "https://console.vast.ai"  # the CLI's VAST_URL
    api_key_file: str | None = None
    api_key_env: str | None = "VAST_API_KEY"
    filters: OfferFilters = Field(default_factory=OfferFilters)
    image: str = "pytorch/pytorch:latest"
    disk_gb: float = Field(default=32.0, gt=0)
    onstart: str | None = None
    interruptible: bool = False
    bid_margin: float = Field(default=0.1, ge=0)  # bid min_bid x (1 + margin)
    max_price_per_hour: float | None = Field(default=None, gt=0)  # one instance
    max_total_per_hour: float | None = Field(default=None, gt=0)  # all instances of the collection
    label_prefix: str = Field(default="corral", pattern=r"^[A-Za-z0-9_.-]+$")
    ssh_key: str = "~/.ssh/id_ed25519"
    ssh_user: str = "root"
    ssh_via: Literal["proxy", "direct"] = "proxy"  # proxy: ssh_host:ssh_port; direct: public_ipaddr + port
    check_host_key: bool = False  # hosts are new machines every time (the CLI does not check either)
    python: str = "python3"  # makes the worker's venv on the host
    work_dir: str = ".corral-worker"
    worker_runtime: str = "process"
    worker_wheelhouse: str | None = None
    bad_host_seconds: float = Field(default=3600.0, ge=0)  # a machine that failed is skipped this long
    max_offer_attempts: int = Field(default=3, ge=1)  # offers tried by one create before it fails
    search_limit: int = Field(default=64, ge=1, le=1000)
    running_deadline: float = Field(default=900.0, gt=0)  # from rent to `running`
    ssh_deadline: float = Field(default=180.0, gt=0)  # from `running` to an SSH login
    rent_timeout: float = Field(default=60.0, gt=0)  # a create that does not answer: reconciled by label
    poll_seconds: float = Field(default=5.0, gt=0)  # while waiting for `running`
    request_timeout: float = Field(default=30.0, gt=0)
    retries: int = Field(default=5, ge=0)  # 429 and 5xx
    retry_base_seconds: float = Field(default=1.0, ge=0)
    keepalive_interval: float = Field(default=10.0, gt=0)
    keepalive_count_max: int = Field(default=3, ge=1)
    connect_timeout: float = Field(default=20.0, gt=0)
    command_timeout: float = Field(default=900.0, gt=0)
    health_interval: float = Field(default=30.0, gt=0)  # seconds between health samples (0: off)
    health: dict[str, Any] = Field(default_factory=dict)  # thresholds: see corral.providers.health

    def api_key(self, collection: str) -> str:
        """The key from the file or the environment variable; an error names where it looked."""
        if self.api_key_file:
            path = Path(self.api_key_file).expanduser()
            try:
                key = path.read_text().strip()
            except OSError as exc:
                raise InvalidInput(
                    f"instance_collections[{collection}].provider_options.api_key_file: cannot read {path}: "
                    f"{exc.strerror}",
                    field="api_key_file",
                ) from None
            if key:
                return key
        if self.api_key_env and os.environ.get(self.api_key_env, "").strip():
            return os.environ[self.api_key_env].strip()
        raise InvalidInput(
            f"instance_collections[{collection}].provider_options: no vast.ai API key; set api_key_file or "
            f"the environment variable {self.api_key_env or 'named by api_key_env'}",
            field="api_key_file",
        )


def parse_options(raw: dict[str, Any], *, collection: str) -> VastOptions:
    try:
        return VastOptions.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        field = f"instance_collections[{collection}].provider_options.{where}"
        raise InvalidInput(f"{field}: {err['msg']}", field=field) from None
