"""Pause the cyclic garbage collector while a big bunch is parsed and inserted, or a committed batch queued.

A 10,000-job bunch allocates a few hundred thousand container objects that die by reference counting;
with the collector on, they trigger repeated full collections that cost more than the work itself.
The pause is counted, so overlapping requests re-enable it only when the last one finishes.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

_depth = 0
_was_enabled = True


@contextmanager
def gc_paused() -> Iterator[None]:
    global _depth, _was_enabled
    if _depth == 0:
        _was_enabled = gc.isenabled()
        gc.disable()
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0 and _was_enabled:
            gc.enable()
