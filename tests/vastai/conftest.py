"""Fixtures for the vastai provider: one fake vast.ai server (real HTTP on loopback, instances are real sshd
in network namespaces) shared by the module, with a market where each test uses its own machines."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.fakes.vastai.offers import offer
from tests.fakes.vastai.process import FakeVastProcess

import corral
from corral.providers.config import InstanceCollectionConfig
from corral.providers.ssh.bundle import build_wheelhouse, source_digest, source_root, worker_bundle
from corral.providers.ssh.session import INSTALL
from corral.providers.vastai.options import parse_options
from corral.providers.vastai.provider import VastProvider
from corral.runtimes.owners import read_record, worker_record_paths
from corral.worker.reaper import reap_dead_workers

NOWHERE = "http://127.0.0.1:9"  # provider-level tests: workers start and keep retrying their driver
FAST = {
    "poll_seconds": 0.2,
    "running_deadline": 20.0,
    "ssh_deadline": 10.0,
    "rent_timeout": 2.0,
    "retry_base_seconds": 0.05,
    "connect_timeout": 5.0,
    "keepalive_interval": 2.0,
    "keepalive_count_max": 5,
    "bad_host_seconds": 600,
    "health_interval": 0.5,
}


def market() -> list[dict[str, Any]]:
    """Machines 1000-1999, one RTX 4090 offer each, price rising with the id inside each block of ten
    (so in every block the lowest id is the cheapest per performance); a few 2-GPU and a few A100 offers."""
    offers = []
    for m in range(1000, 1400):
        offers.append(offer(m * 10, m, "RTX 4090", 1, dph=round(0.30 + (m % 10) * 0.01, 4)))
        if m % 10 == 0:  # a second ask on the cheapest machine of a block (spreading prefers others)
            offers.append(offer(m * 10 + 1, m, "RTX 4090", 1, dph=round(0.30 + (m % 10) * 0.01, 4)))
    return offers


@pytest.fixture(scope="session")
def client_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("vast-key")
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "id")], check=True)
    return d / "id"


@pytest.fixture(scope="session")
def dead_workers_reaped(tmp_path_factory: pytest.TempPathFactory, vast_work_dir: Path) -> Iterator[None]:
    """Torn down after the fake (which asks for it): its instances' workers are SIGKILLed with them, as a
    vanished host's would be, and what they leave stays on this machine (a real host goes with its
    worker): their cgroups (a job's kept one, if killed within the pool's idle time) and work dirs. The
    host-wide reaper every root worker runs at its start removes them, as it would for the next worker
    here; run until no worker of the fake's is recorded, so that nothing outlives the run."""
    yield
    own = tmp_path_factory.mktemp("vast-reaper")  # the reaper's own work dir: one no worker uses
    deadline = time.monotonic() + 10
    while True:
        reap_dead_workers(own)
        if not _workers_recorded_under(vast_work_dir) or time.monotonic() > deadline:
            return
        time.sleep(0.2)  # killed a moment ago: a worker still dying is not provably dead yet


def _workers_recorded_under(root: Path) -> bool:
    for path in worker_record_paths():
        record = read_record(path)
        if record is not None and Path(str(record.get("work_dir", "/"))).is_relative_to(root):
            return True
    return False


@pytest.fixture(scope="session")
def fake_vast(
    tmp_path_factory: pytest.TempPathFactory, dead_workers_reaped: None
) -> Iterator[FakeVastProcess]:
    fake = FakeVastProcess(
        tmp_path_factory.mktemp("fake-vast"),
        market(),
        delays={"scheduling": 0.1, "loading": 0.3, "ssh": 0.2, "create_hang": 6.0},
    )
    fake.start()
    yield fake
    fake.stop()


@pytest.fixture(scope="session")
def wheelhouse() -> Path:
    """The worker's wheels, built once: the bundle stays the same while the tests run."""
    root = source_root()
    assert root is not None
    digest = f"{corral.__version__}-{source_digest(root)}"
    return asyncio.run(build_wheelhouse(root, digest))


@pytest.fixture(scope="session")
def vast_work_dir(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Iterator[Path]:
    """The worker directory of every fake instance (they share this machine's disk), with the worker's venv
    installed once by the ssh provider's own install script: each bring-up then finds it ready (as on a
    host image that has it), instead of pushing 25 MB of wheels through every test."""
    work = tmp_path_factory.mktemp("vast-work")
    bundle = asyncio.run(worker_bundle(str(wheelhouse)))
    subprocess.run(["sh", "-c", INSTALL, "install", str(work), bundle.digest, "python3"], input=bundle.tar,
                   check=True, capture_output=True)
    yield work
    # A destroyed fake instance's worker is SIGKILLed, as a vanished host's would be; its pooled /io
    # volumes stay mounted on this machine (a real host's disk goes with it). Nothing may outlive the run.
    for point in reversed(_mounts_under(work)):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)


def _mounts_under(root: Path) -> list[str]:
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if Path(point).is_relative_to(root):
            found.append(point)
    return found


class Blocks:
    """Each test takes its own block of ten machines (faults on machines are sticky in the fake)."""

    next = 1000

    @classmethod
    def take(cls, n: int = 10) -> list[int]:
        ids = list(range(cls.next, cls.next + n))
        cls.next += 10  # whole blocks: the cheapest machine of a block is its first
        return ids


def collection_config(
    fake: FakeVastProcess,
    key: Path,
    work_dir: Path,
    machines: list[int],
    *,
    name: str = "gpu",
    prepare: dict[str, Any] | None = None,
    **options: Any,
) -> dict[str, Any]:
    filters = {
        "gpu_name": ["RTX 4090"],
        "extra": {"machine_id": {"in": machines}},
        **options.pop("filters", {}),
    }
    return {
        "name": name,
        "kind": "pool",
        "provider": "vastai",
        "shape": {"cores": 1, "memory": "256Mi", "gpus": 1, "gpu_type": "RTX 4090"},
        "max_instances": 4,
        "idle_seconds": 60,
        "provider_options": {
            "url": fake.url,
            "api_key_env": "FAKE_VAST_KEY_UNSET",
            "api_key_file": str(key.parent / "api_key"),
            "ssh_key": str(key),
            "image": "pytorch/pytorch:2.4.0",
            "disk_gb": 20,
            "work_dir": str(work_dir),
            "filters": filters,
            **FAST,
            **options,
        },
        **({"prepare": prepare} if prepare else {}),
    }


@pytest.fixture
async def make_provider(
    fake_vast: FakeVastProcess, client_key: Path, vast_work_dir: Path, wheelhouse: Path
) -> AsyncIterator[Any]:
    (client_key.parent / "api_key").write_text(fake_vast.api_key + "\n")
    made: list[VastProvider] = []

    async def make(machines: list[int], **kw: Any) -> VastProvider:
        config = InstanceCollectionConfig.model_validate(
            collection_config(fake_vast, client_key, vast_work_dir, machines, name=f"t{len(made)}",
                              worker_wheelhouse=str(wheelhouse), **kw)
        )
        options = parse_options(config.provider_options, collection=config.name)
        provider = VastProvider(config, options, options.api_key(config.name))
        await provider.start(NOWHERE)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        for name in list(provider.rented):
            await provider.delete_instance(name, {})
        await provider.stop()
