"""The `corral` command-line interface (Typer)."""

from __future__ import annotations

import sys

# httpx imports its own command-line client (click, pygments, rich.syntax: ~90 ms) when those are
# installed; corral never uses it, and httpx falls back to a stub when that import fails.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
