"""A running attempt's resource usage over time: samples from the runtime, sent as `usage` events.

The runtime calls `sample(time, cpu_seconds, memory_bytes)` about once a second (cumulative cpu time of
the job's cgroup, memory in use now). A sample is kept every 2 s for the first 10 minutes, every 10 s
up to 2 hours and every 60 s after that, so a long job's series stays small; kept samples go out in
one `usage` event every few seconds: {"type": "usage", "key", "time", "samples": [[t, cpu_mcpu, mem], ...]}.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

REPORT_INTERVAL = 5.0  # seconds between usage events of one attempt


def keep_interval(elapsed: float) -> float:
    if elapsed < 600:
        return 2.0
    if elapsed < 7200:
        return 10.0
    return 60.0


class UsageRecorder:
    def __init__(self, key: str, emit: Callable[[dict[str, Any]], None]) -> None:
        self.key = key
        self.emit = emit
        self._first: float | None = None
        self._last: tuple[float, float] | None = None  # (time, cpu_seconds) of the last kept sample
        self._pending: list[list[float | int]] = []
        self._last_emit = 0.0

    def sample(self, t: float, cpu_seconds: float, memory_bytes: int) -> None:
        if self._first is None:
            self._first = t
            self._last = (t, cpu_seconds)
            self._last_emit = t
            return  # the first reading is the baseline for the cpu rate
        assert self._last is not None
        last_t, last_cpu = self._last
        if t - last_t < keep_interval(t - self._first):
            return
        cores = max(0.0, cpu_seconds - last_cpu) / (t - last_t)
        self._pending.append([round(t, 3), round(cores * 1000), max(0, int(memory_bytes))])
        self._last = (t, cpu_seconds)
        if t - self._last_emit >= REPORT_INTERVAL:
            self.flush(t)

    def flush(self, t: float | None = None) -> None:
        if self._pending:
            sent = self._pending[-1][0]
            self.emit({"type": "usage", "key": self.key, "time": sent, "samples": self._pending})
            self._pending = []
        if t is not None:
            self._last_emit = t
