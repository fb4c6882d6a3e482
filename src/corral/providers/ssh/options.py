"""The `provider_options` of an ssh instance collection, and the host inventory (inline or a file).

    [instance_collections.provider_options]
    inventory = "/etc/corral/hosts.toml"   # re-read every loop: hosts can be added or removed while running
    keepalive_interval = 5                 # a host silent for interval x count_max is gone
    [[instance_collections.provider_options.hosts]]
    name = "gpu1"
    address = "10.0.0.5"
    user = "lab"
    key = "~/.ssh/id_ed25519"
    cores = 16
    memory = "64Gi"
    gpus = 2
    gpu_type = "a100"
    jump = { address = "bastion.example.org", user = "lab" }
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from corral.errors import InvalidInput


class JumpHost(BaseModel):
    """A bastion the connection goes through (ssh -J), or a command that carries it (ProxyCommand)."""

    model_config = ConfigDict(extra="forbid")

    address: str = "jump"
    port: int = Field(default=22, ge=1, le=65535)
    user: str | None = None
    key: str | None = None
    proxy_command: str | None = None
    check_host_key: bool = True
    known_hosts: str | None = None


class SshHost(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    address: str = Field(min_length=1)
    port: int = Field(default=22, ge=1, le=65535)
    user: str | None = None
    key: str | None = None  # private key file; default: ~/.ssh keys
    jump: JumpHost | None = None
    proxy_command: str | None = None
    check_host_key: bool = True
    known_hosts: str | None = None  # default ~/.ssh/known_hosts
    cores: float = Field(gt=0)
    memory: str = "4Gi"
    gpus: int = Field(default=0, ge=0)
    gpu_type: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    python: str = "python3"  # makes the worker's virtual environment on the host
    work_dir: str = ".corral-worker"  # relative to the login's home unless absolute


class SshOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    hosts: list[SshHost] = Field(default_factory=list)
    inventory: str | None = None  # a TOML ([[hosts]]) or JSON ({"hosts": [...]}) file, re-read every loop
    keepalive_interval: float = Field(default=5.0, gt=0)
    keepalive_count_max: int = Field(default=3, ge=1)
    connect_timeout: float = Field(default=15.0, gt=0)
    command_timeout: float = Field(default=600.0, gt=0)  # installing the worker on a slow host
    host_retry_seconds: float = Field(default=30.0, ge=0)  # after a host failed, try others first
    worker_runtime: str = "process"
    worker_wheelhouse: str | None = None  # wheels of corral and its dependencies; default: built here
    health_interval: float = Field(default=30.0, ge=0)  # seconds between health samples of a host (0: off)
    health: dict[str, Any] = Field(default_factory=dict)  # thresholds: corral.providers.health


def parse_options(raw: dict[str, Any], *, collection: str) -> SshOptions:
    try:
        return SshOptions.model_validate(raw)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        field = f"instance_collections[{collection}].provider_options.{where}"
        raise InvalidInput(f"{field}: {err['msg']}", field=field) from None


def read_inventory(path: str, *, collection: str) -> list[SshHost]:
    """Hosts from the inventory file; a broken file is an error naming it (the caller keeps the last list)."""
    file = Path(path).expanduser()
    text = file.read_text()
    data: Any = json.loads(text) if file.suffix == ".json" else tomllib.loads(text)
    raw_hosts = data.get("hosts", []) if isinstance(data, dict) else data
    try:
        return [SshHost.model_validate(h) for h in raw_hosts]
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        raise InvalidInput(
            f"{file}: hosts.{where}: {err['msg']} (inventory of {collection})", field="inventory"
        ) from None


def check_key_files(hosts: list[SshHost], *, collection: str) -> None:
    """A key file named in the configuration must exist now, not fail at the first job."""
    for host in hosts:
        for what, key in (("key", host.key), ("jump.key", host.jump.key if host.jump else None)):
            if key and not Path(key).expanduser().is_file():
                field = f"instance_collections[{collection}].provider_options.hosts[{host.name}].{what}"
                raise InvalidInput(f"{field}: no such key file {key!r}", field=field)


def host_key_hint(host: SshHost) -> str:
    """What to do when the host's key is not known (asyncssh.HostKeyNotVerifiable)."""
    file = host.known_hosts or "~/.ssh/known_hosts"
    port = f"-p {host.port} " if host.port != 22 else ""
    return (
        f"its host key is not in {file}: add it (ssh-keyscan {port}{host.address} >> {file}), or set "
        f"known_hosts = \"FILE\" for host {host.name} in provider_options (check_host_key = false skips "
        "the check)"
    )
