"""The vastai provider (see provider.py); `create_provider` is what the registry calls."""

from __future__ import annotations

from corral.providers.vastai.provider import VastProvider, create_provider

__all__ = ["VastProvider", "create_provider"]
