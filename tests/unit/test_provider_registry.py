"""Providers are found by name (or module path) and imported lazily."""

from __future__ import annotations

import pytest

from corral.config import Settings
from corral.errors import InvalidInput
from corral.providers.config import InstanceCollectionConfig
from corral.providers.registry import create_provider, load_factory, provider_module
from corral.providers.ssh import SshProvider


def _collection(provider: str, **options: object) -> InstanceCollectionConfig:
    return InstanceCollectionConfig(
        name="lab", provider=provider, shape={"cores": 1}, provider_options=options
    )


def test_builtin_names_map_to_modules() -> None:
    assert provider_module("ssh") == "corral.providers.ssh"
    assert provider_module("slurm") == "corral.providers.slurm"
    assert provider_module("acme.providers.vast") == "acme.providers.vast"


def test_the_ssh_provider_is_created_from_its_options() -> None:
    hosts = [{"name": "h1", "address": "10.0.0.1", "cores": 4, "gpus": 2, "gpu_type": "t4"}]
    provider = create_provider(_collection("ssh", hosts=hosts), Settings(local_workers=0))
    assert isinstance(provider, SshProvider)
    (host,) = provider.hosts.values()
    assert (host.cores, host.gpus, host.gpu_type) == (4, 2, "t4")


def test_unknown_provider_or_bad_option_names_the_field() -> None:
    with pytest.raises(InvalidInput, match="unknown provider 'nope'"):
        load_factory("nope")
    with pytest.raises(InvalidInput, match="cannot be imported"):
        load_factory("no_such_package.provider")
    with pytest.raises(InvalidInput, match=r"provider_options\.hosts\.0\.cores"):
        create_provider(_collection("ssh", hosts=[{"name": "h1", "address": "x"}]), Settings(local_workers=0))
