"""A plain `python pipeline.py` whose `b.run()` fails ends with the failure summary, not a traceback.

Python prints the traceback of any exception a script does not catch. For `BatchFailed` that buries
what the user needs (which jobs failed, why, how to read their logs: the exception's message) under
frames of Corral's own code. So when the library raises `BatchFailed`, it installs a `sys.excepthook`
that prints that summary alone for an uncaught `BatchFailed` and hands every other exception to the
hook that was there before (Python's default, or the user's own), unchanged. Python still exits with
status 1 after an uncaught exception, as `corral run` does for a failed batch. A script that catches
the error never reaches the hook; IPython and Jupyter show errors their own way and do not use it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import TracebackType
from typing import Any

from corral.client.errors import BatchFailed

ExceptHook = Callable[[type[BaseException], BaseException, TracebackType | None], Any]
_MARK = "_corral_batch_failed_hook"


def _hook_for(previous: ExceptHook) -> ExceptHook:
    def hook(exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
        if isinstance(exc, BatchFailed):
            print(f"corral: {exc.message}", file=sys.stderr, flush=True)
            return
        previous(exc_type, exc, tb)

    setattr(hook, _MARK, True)
    return hook


def install() -> None:
    """Show an uncaught BatchFailed as its summary; other exceptions as before. Idempotent."""
    if not getattr(sys.excepthook, _MARK, False):
        sys.excepthook = _hook_for(sys.excepthook)
