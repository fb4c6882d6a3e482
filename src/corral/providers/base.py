"""Where instances come from. Providers are chosen by name from configuration; a new provider is a new module.

Two kinds of provider exist:
* the embedded `LocalProvider` (standing worker processes on this machine, configured by `local_workers`);
* providers the autoscaler drives (`ssh`, `slurm`, clouds): they implement `InstanceProvider`, and the
  autoscaler (driver/autoscaler.py) decides when to create and delete instances for each instance collection.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from corral.config import Settings


class Provider(Protocol):
    name: str

    async def start(self, driver_url: str) -> None:
        """Adopt or clean up the instances it left in the store, then bring up what is configured."""

    async def stop(self) -> None:
        """Release every instance it runs (the embedded server's workers stop with it)."""


@dataclass(frozen=True)
class MachineShape:
    """A kind of machine a provider can bring up, and what it costs."""

    name: str
    cores: float
    memory_bytes: int
    gpus: int = 0
    gpu_type: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    price_per_hour: float = 0.0  # in the site's currency; feeds jobs' cost
    preemptible: bool = False


@dataclass(frozen=True)
class InstanceRequest:
    """What the autoscaler asks a provider for: one instance of `shape` for `collection`."""

    name: str  # unique, chosen by the driver; also the worker's instance name
    collection: str
    shape: MachineShape
    worker_token: str  # the worker presents this to the driver
    driver_url: str  # the driver as seen from this machine; a provider may tunnel and substitute its own
    serves: str | None = None  # the user a job-private instance runs a job for (None: a pool's users)


InstanceStatus = Literal["pending", "running", "gone"]


@dataclass(frozen=True)
class ProviderInstance:
    """One instance as the provider sees it now (from one listing call per tick, e.g. one `squeue`)."""

    name: str
    status: InstanceStatus
    reason: str | None = None  # why it is gone: "preempted", "time limit", "node failure", "unreachable", …
    metadata: dict[str, object] = field(default_factory=dict)


@runtime_checkable
class InstanceProvider(Protocol):
    """A provider the autoscaler drives. All methods are safe to call again after a driver restart."""

    name: str

    async def start(self, driver_url: str) -> None:
        """Connect (SSH sessions, SLURM login node …); no instances are created here."""
        ...

    async def stop(self) -> None:
        """Close connections. Instances are left running only if they can be adopted after a restart."""
        ...

    async def create_instance(self, request: InstanceRequest) -> dict[str, object]:
        """Start a worker for `request`; return the metadata to store with it (job id, host, pid)."""
        ...

    async def delete_instance(self, name: str, metadata: dict[str, object]) -> None:
        """Stop the instance's worker and release the machine (`scancel`, kill over SSH, …). Idempotent."""
        ...

    async def list_instances(self) -> list[ProviderInstance]:
        """Every instance of ours the provider knows, in ONE call (one `squeue` per tick, not one per job)."""
        ...


@runtime_checkable
class BoundedProvider(Protocol):
    """Optional: a provider with a fixed inventory (ssh hosts) says how many more instances of a shape fit,
    so the autoscaler does not ask for instances that would fail."""

    def capacity(self, shape: MachineShape) -> int: ...


def worker_environment(settings: Settings) -> dict[str, str]:
    """Environment a remote worker (SSH host, SLURM pilot, rented host) takes from the server's settings:
    the site's `[jobs]` policy as `CORRAL_JOBS` and its `[images]` settings as `CORRAL_IMAGES` (JSON; only
    what differs from the defaults, so a site that sets nothing sends nothing). Built from the Settings, so
    what corral.toml sets travels as well as the server's environment. The image cache's directory stays
    the worker's own (a path on the server means nothing there); registry passwords travel in clear, to
    the site's own hosts, as the worker needs them to pull."""
    env: dict[str, str] = {}
    policy = settings.jobs.model_dump(mode="json", exclude_defaults=True)
    if policy:
        env["CORRAL_JOBS"] = json.dumps(policy, separators=(",", ":"))
    images = settings.images.model_dump(mode="json", exclude_defaults=True, exclude={"cache_dir"})
    for host, registry in images.get("registries", {}).items():
        password = settings.images.registries[host].password
        if password is not None:
            registry["password"] = password.get_secret_value()
    if images:
        env["CORRAL_IMAGES"] = json.dumps(images, separators=(",", ":"))
    return env