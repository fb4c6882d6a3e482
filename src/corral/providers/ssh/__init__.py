"""The ssh provider (see provider.py); `create_provider` is what the registry calls."""

from __future__ import annotations

from corral.providers.ssh.provider import SshProvider, create_provider

__all__ = ["SshProvider", "create_provider"]
