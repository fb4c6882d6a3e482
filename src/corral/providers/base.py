"""Where instances come from. Providers are chosen by name; a new provider is a new module."""

from __future__ import annotations

from typing import Protocol


class Provider(Protocol):
    name: str

    async def start(self, driver_url: str) -> None:
        """Adopt or clean up the instances it left in the store, then bring up what is configured."""

    async def stop(self) -> None:
        """Release every instance it runs (the embedded server's workers stop with it)."""
