"""The worker's usage recorder: cpu rate from cumulative cpu time, thinning, batching into events."""

from __future__ import annotations

from typing import Any

from corral.worker.usage import REPORT_INTERVAL, UsageRecorder, keep_interval


def test_samples_become_cpu_rates_and_go_out_in_usage_events() -> None:
    events: list[dict[str, Any]] = []
    rec = UsageRecorder("1.2.1", events.append)
    rec.sample(100.0, 0.0, 10)  # the baseline
    rec.sample(101.0, 0.5, 20)  # too soon after the baseline: not kept
    rec.sample(102.0, 2.0, 30)  # 2 cpu-seconds in 2 s: one core
    rec.sample(104.0, 3.0, 40)  # half a core
    assert events == []
    rec.sample(100.0 + REPORT_INTERVAL + 2, 5.0, 50)
    assert events == [
        {
            "type": "usage",
            "key": "1.2.1",
            "time": 107.0,
            "samples": [[102.0, 1000, 30], [104.0, 500, 40], [107.0, 667, 50]],
        }
    ]
    rec.sample(109.0, 5.0, 60)
    rec.flush()
    assert events[-1]["samples"] == [[109.0, 0, 60]]
    rec.flush()
    assert len(events) == 2  # nothing pending: no empty event


def test_long_jobs_keep_fewer_samples() -> None:
    assert keep_interval(0) == 2.0 and keep_interval(3600) == 10.0 and keep_interval(10_000) == 60.0
    events: list[dict[str, Any]] = []
    rec = UsageRecorder("k", events.append)
    for second in range(0, 4 * 3600):
        rec.sample(float(second), second * 0.5, 1)
    rec.flush()
    n = sum(len(e["samples"]) for e in events)
    assert 300 + 660 + 120 - 5 <= n <= 300 + 660 + 120 + 5
