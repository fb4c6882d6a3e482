"""The `provider_options` of a SLURM instance collection, validated (a typo is an error naming the key).

    [instance_collections.provider_options]
    partition = "gpu"
    account = "lab"
    qos = "normal"
    time_limit = "12:00:00"         # sbatch --time; a pilot's walltime
    gres = "gpu:a100:2"             # default: gpu:N from the shape's gpus (and gpu_type)
    env = { SLURM_CONF = "/etc/slurm/slurm.conf" }   # set for every SLURM command
    worker_python = "/opt/corral/bin/python"         # runs `python -m corral worker` on the nodes
    [instance_collections.provider_options.ssh]      # absent: SLURM commands run on this machine
    host = "login.cluster.example"
    user = "me"
    key = "~/.ssh/id_ed25519"
"""

from __future__ import annotations

import re
import sys
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from corral.errors import InvalidInput

# sbatch --time: minutes | min:sec | h:m:s | d-h | d-h:m | d-h:m:s | UNLIMITED
_TIME = re.compile(r"^(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+(:\d{1,2}){0,2}|UNLIMITED|INFINITE)$")


class SshLogin(BaseModel):
    """The cluster's login node, reached with asyncssh; workers reach the driver through a tunnel there."""

    model_config = ConfigDict(extra="forbid")

    host: str = Field(min_length=1)
    port: int = Field(default=22, ge=1, le=65535)
    user: str | None = None
    key: str | None = None  # private key file; default: the SSH agent / ~/.ssh keys
    known_hosts: str | None = None  # file of trusted host keys; default ~/.ssh/known_hosts
    check_host_key: bool = True
    # The reverse tunnel to the driver: listens on the login node at tunnel_bind:tunnel_port, and workers on
    # compute nodes call http://tunnel_host:tunnel_port. On a real cluster the compute nodes are other hosts:
    # bind "0.0.0.0" (sshd needs GatewayPorts clientspecified) and give the login node's name as tunnel_host.
    tunnel_bind: str = "127.0.0.1"
    tunnel_host: str | None = None  # default: tunnel_bind
    tunnel_port: int = Field(default=0, ge=0, le=65535)  # 0: any free port (kept across reconnects)
    connect_timeout: float = Field(default=15.0, gt=0)


class SlurmOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    partition: str | None = None
    account: str | None = None
    qos: str | None = None
    time_limit: str | None = None
    # Seconds before the walltime ends when the pilot stops taking jobs and exits once its jobs are done
    # (sbatch --signal=B:INT@N; SLURM sends it up to 30 s late). Off: jobs still running at the end are
    # given back and retried elsewhere.
    drain_before_end: int | None = Field(default=None, ge=1)
    gres: str | None = None
    sbatch_args: list[str] = Field(default_factory=list)  # anything else, e.g. ["--constraint=avx2"]
    env: dict[str, str] = Field(default_factory=dict)
    ssh: SshLogin | None = None
    job_name_prefix: str = Field(default="corral.", pattern=r"^[A-Za-z0-9_.:-]+$")
    # The driver's URL as the compute nodes see it, when the driver's own address does not reach them
    # (e.g. "http://headnode:8642"); no tunnel is opened then.
    driver_url: str | None = Field(default=None, pattern=r"^https?://")
    worker_python: str | None = None  # default: this interpreter locally, `python3` over SSH
    worker_runtime: str = "process"
    worker_work_dir: str | None = None  # jobs' scratch on the node; default $TMPDIR/corral-pilot-<job id>
    log_dir: str | None = None  # pilots' output; default: $CORRAL_HOME/slurm (local), ~/.corral/slurm (SSH)
    history: Literal["completion_log", "accounting"] = "completion_log"  # sacct -c | sacct (slurmdbd)
    # Seconds one squeue answer may serve further listings: SLURM collections listed one after another in a
    # tick share one squeue. Pilots submitted after it was taken are reported pending, never missing.
    status_max_age: float = Field(default=1.0, ge=0)
    command_timeout: float = Field(default=60.0, gt=0)

    @field_validator("time_limit")
    @classmethod
    def _time_format(cls, value: str | None) -> str | None:
        if value is not None and not _TIME.match(value):
            raise ValueError(
                f"{value!r} is not a SLURM time; use minutes, 'hh:mm:ss' or 'days-hh:mm:ss' (e.g. '12:00:00')"
            )
        return value

    @property
    def python(self) -> str:
        return self.worker_python or ("python3" if self.ssh else sys.executable)


def parse_options(collection: str, raw: dict[str, Any]) -> SlurmOptions:
    """Validate; an error names the collection and the key to change."""
    try:
        return SlurmOptions.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        field = f"instance_collections[{collection}].provider_options.{where}"
        raise InvalidInput(f"{field}: {first['msg']}", field=field) from None
