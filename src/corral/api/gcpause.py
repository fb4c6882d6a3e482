"""The API's name for `corral.gcpause` (one pause counter, shared with the driver)."""

from __future__ import annotations

from corral.gcpause import gc_paused

__all__ = ["gc_paused"]
