"""What every workload gets: the sizes, a log, the peers (started once, shared), and cleanup at the end."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from typing import Any, TypeVar

from bench.sizes import Sizes

T = TypeVar("T")


@dataclass
class Context:
    sizes: Sizes
    started: float = field(default_factory=time.monotonic)
    cleanup: ExitStack = field(default_factory=ExitStack)
    _shared: dict[str, Any] = field(default_factory=dict)

    def log(self, message: str) -> None:
        print(f"[bench {time.monotonic() - self.started:6.1f}s] {message}", file=sys.stderr, flush=True)

    def shared(self, key: str, make: Callable[[], T]) -> T:
        """One instance per run (e.g. the SLURM cluster), made on first use; a failure is remembered."""
        if key not in self._shared:
            try:
                self._shared[key] = make()
            except Exception as exc:
                self._shared[key] = exc
        value = self._shared[key]
        if isinstance(value, Exception):
            raise value
        return value  # type: ignore[no-any-return]
