"""Fixtures for the SLURM provider tests: the real 4-node cluster, a private sshd (the login node), real
`corral server` processes, and providers whose jobs are cancelled when the test ends."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.acceptance.harness import RunningServer
from tests.slurm.infra import PilotSlot, Sshd, register_pilots, slurm, start_cluster, start_sshd

from corral.config import Settings
from corral.domain.resources import parse_bytes
from corral.driver.collections import collection_shape
from corral.providers.base import InstanceRequest
from corral.providers.config import InstanceCollectionConfig
from corral.providers.slurm import SlurmProvider
from corral.providers.slurm.runners import CommandRunner


@pytest.fixture(scope="session")
def slurm_conf() -> str:
    return start_cluster()


@pytest.fixture(scope="session")
def sshd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Sshd]:
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


def server_env(home: Path, collection: str, **settings: Any) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update({
        "CORRAL_HOME": str(home), "CORRAL_PORT": "0", "CORRAL_URL_FILE": str(home / "server.url"),
        "CORRAL_LOCAL_WORKERS": "0", "CORRAL_POOL": collection, "CORRAL_HEARTBEAT_INTERVAL": "0.5",
        "CORRAL_HEARTBEAT_TIMEOUT": "30",
    })
    env.update({f"CORRAL_{k.upper()}": str(v) for k, v in settings.items()})
    return env


@pytest.fixture
def corral_server(tmp_path: Path) -> Iterator[Any]:
    """start(collection, names, cores, memory) -> (server, slots): a real `corral server` with no local
    workers whose default pool is COLLECTION, knowing pilot instances NAMES (registered before it starts)."""
    servers: list[RunningServer] = []

    async def start(collection: str, names: list[str], *, cores: float = 2, memory: str = "1Gi",
                    **settings: Any) -> tuple[RunningServer, list[PilotSlot]]:
        home = tmp_path / f"server{len(servers)}"
        slots = await register_pilots(home, collection, names, cores=cores,
                                      memory_bytes=parse_bytes(memory, field="memory"))
        server = RunningServer(home, server_env(home, collection, **settings))
        servers.append(server)
        server.start()
        return server, slots

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
async def slurm_provider(slurm_conf: str, tmp_path: Path) -> AsyncIterator[Any]:
    """make(options=…, shape=…, runner=…) -> a started SlurmProvider for a fresh collection; every job of
    its collection is cancelled when the test ends."""
    made: list[SlurmProvider] = []

    async def make(*, driver_url: str = "http://127.0.0.1:9", cores: float = 1, memory: str = "256Mi",
                   gpus: int = 0, runner: CommandRunner | None = None, kind: str = "pool",
                   name: str | None = None, extra_options: dict[str, Any] | None = None,
                   jobs: dict[str, Any] | None = None, **options: Any) -> SlurmProvider:
        name = name or f"t{uuid.uuid4().hex[:8]}"
        # status_max_age 0: every listing asks squeue (the tests watch state changes as they happen)
        opts = {"env": {"SLURM_CONF": slurm_conf}, "log_dir": str(tmp_path / "pilots"), "status_max_age": 0,
                **options, **(extra_options or {})}
        collection = InstanceCollectionConfig(
            name=name, kind=kind, provider="slurm", shape={"cores": cores, "memory": memory, "gpus": gpus},
            provider_options=opts,
        )
        settings = Settings(home=tmp_path / "home", jobs=jobs or {})  # jobs: the site's [jobs] policy
        provider = SlurmProvider(collection, settings, runner=runner)
        await provider.start(driver_url)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        prefix = f"{provider.options.job_name_prefix}{provider.collection.name}."
        listing = slurm(slurm_conf, "squeue", "-h", "-o", "%i|%j").splitlines()
        ours = [line.split("|", 1)[0] for line in listing if line.split("|", 1)[1].startswith(prefix)]
        if ours:
            slurm(slurm_conf, "scancel", *ours, check=False)
        await provider.stop()


def request_for(provider: SlurmProvider, name: str, token: str = "not-a-real-token",
                driver_url: str = "") -> InstanceRequest:
    shape = collection_shape(provider.collection)
    assert shape is not None
    return InstanceRequest(name=name, collection=provider.collection.name, shape=shape, worker_token=token,
                           driver_url=driver_url or provider._driver_url)
