"""Providers by name: `provider = "ssh"` in an instance collection imports `corral.providers.ssh` lazily.

A provider module exposes `create_provider(collection, settings) -> InstanceProvider`, called once per
instance collection. A name with a dot ("mylab.providers.vast") is taken as a module path, so a new
provider is a new module and nothing here changes.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from corral.errors import InvalidInput
from corral.providers.base import InstanceProvider
from corral.providers.config import InstanceCollectionConfig

if TYPE_CHECKING:
    from corral.config import Settings

ProviderFactory = Callable[[InstanceCollectionConfig, "Settings"], InstanceProvider]

MODULES: dict[str, str] = {
    "ssh": "corral.providers.ssh",
    "slurm": "corral.providers.slurm",
    "vastai": "corral.providers.vastai",
}
FACTORY_NAMES = ("create_provider", "make_provider", "provider_factory")


def provider_module(name: str) -> str:
    if name in MODULES:
        return MODULES[name]
    if "." in name:
        return name
    raise InvalidInput(
        f"instance_collections.provider: unknown provider {name!r}; use one of {sorted(MODULES)} "
        "or a module path such as 'mypackage.my_provider'",
        field="instance_collections.provider",
    )


def load_factory(name: str) -> ProviderFactory:
    path = provider_module(name)
    try:
        module = importlib.import_module(path)
    except ImportError as exc:
        raise InvalidInput(
            f"instance_collections.provider: provider {name!r} (module {path}) cannot be imported: {exc}",
            field="instance_collections.provider",
        ) from None
    for attr in FACTORY_NAMES:
        factory = getattr(module, attr, None)
        if callable(factory):
            return cast(ProviderFactory, factory)
    raise InvalidInput(
        f"instance_collections.provider: module {path} has no create_provider(collection, settings)",
        field="instance_collections.provider",
    )


def create_provider(collection: InstanceCollectionConfig, settings: Settings) -> InstanceProvider:
    provider = load_factory(collection.provider)(collection, settings)
    if not isinstance(provider, InstanceProvider):
        raise InvalidInput(
            f"instance_collections[{collection.name}].provider: {collection.provider!r} did not return an "
            "InstanceProvider (create_instance, delete_instance, list_instances, shapes, start, stop)",
            field="instance_collections.provider",
        )
    return provider
