"""A session's report page: its three plots (saved as PNGs and embedded), tables and results.json."""

from __future__ import annotations

import base64
import json
from pathlib import Path

from corral.sessions.report import manifest_of, write_report
from corral.sessions.results import CellStat, RunResult


def test_the_report_embeds_its_three_plots_and_lists_every_cell(tmp_path: Path) -> None:
    stats = {
        ("small", "curl"): {
            "throughput": CellStat("throughput", "req/s", [100.0, 110.0], 2),
            "p50_ms": CellStat("p50_ms", "ms", [5.0, 6.0], 2),
            "p99_ms": CellStat("p99_ms", "ms", [9.0, 12.0], 2),
        },
        ("large", "curl"): {"throughput": CellStat("throughput", "req/s", [200.0], 1)},
    }
    samples = [[0, float(i % 7), True] for i in range(50)]
    series = [{"t": 10.0 + i, "completed": float(3 * i), "measured": i > 2} for i in range(10)]
    runs = [RunResult("small", 1, "curl", 1, 1, "Success", samples=samples, timeseries=series)]
    manifest = manifest_of({"id": 1, "name": "s", "state": "done"}, "abc", 7, 2, runs, [], None)
    page = write_report(tmp_path, manifest, stats, {"small": {"size": 1}}, runs, [], [])

    pngs = sorted(p.name for p in (tmp_path / "plots").iterdir())
    assert pngs == ["latency_vs_throughput.png", "percentiles.png", "timeseries.png"]
    html = page.read_text()
    for name in pngs:
        data = (tmp_path / "plots" / name).read_bytes()
        assert data.startswith(b"\x89PNG")
        assert base64.b64encode(data).decode() in html  # embedded: the page stands alone
    for title in ("Latency vs throughput", "Percentile curves", "Time series"):
        assert title in html
    results = json.loads((tmp_path / "results.json").read_text())
    assert sorted(results["cells"]) == ["large/curl", "small/curl"]
    assert results["cells"]["small/curl"]["metrics"]["throughput"]["mean"] == 105.0
