"""Benchmark sessions from Python: `corral.bench.run(recipe)` (a path, a dict or a Recipe)."""

from __future__ import annotations

from corral.sessions.recipe import Recipe, load_recipe, parse_recipe
from corral.sessions.runner import SessionOutcome, finalize, run, stop, submit

__all__ = ["Recipe", "SessionOutcome", "finalize", "load_recipe", "parse_recipe", "run", "stop", "submit"]
