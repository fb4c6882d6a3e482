"""Sessions' and sweeps' pages at the HTML level (no browser): content = the API's, access rules, escaping."""

from __future__ import annotations

import csv
import html as html_lib
import io
import json
import re
import time
from pathlib import Path
from statistics import mean
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from sqlalchemy import update
from test_api_support import Api, api_fixture, job  # noqa: F401

from corral.store.tables import jobs
from corral.sweeps.merge import CHUNKS_KEY, RESULT_COLUMNS_KEY
from corral.sweeps.storage import SweepLayout, local_bucket_url

XSS = "<script>alert(1)</script>"
IMG_XSS = "<img src=x onerror=alert(1)>"
RECIPE = {
    "name": "r",
    "service": {"type": "redis"},
    "clients": [{"type": "redis-benchmark"}],
    "slo": [{"metric": "p99_ms", "max": 5.0}],
}


async def set_job(api: Api, batch_id: int, job_id: int, **values: Any) -> None:
    """Move a Ready job (through Running, as the store's transition rules require) and set fields."""
    where = (jobs.c.batch_id == batch_id) & (jobs.c.job_id == job_id)
    async with api.engine.begin() as conn:
        if values.get("state") not in (None, "Running"):
            await conn.execute(update(jobs).where(where).values(state="Running"))
        await conn.execute(update(jobs).where(where).values(**values))


def row_of(html: str, element_id: str) -> str:
    match = re.search(rf'<tr id="{re.escape(element_id)}"[^>]*>(.*?)</tr>', html, re.S)
    assert match, f"no row #{element_id}"
    return match.group(1)


async def _session_with_results(api: Api) -> tuple[int, int]:
    """A session whose batch has a serving service and two clients (one done), and stored results."""
    service = job(1, command="sleep 1000", name="svc-c1-r1",
                  attributes={"bench_role": "service", "bench_cells": "c1", "bench_repetition": "1"})
    clients = [
        job(i, command="true", name=f"{XSS}-c1-r1-{i - 1}",
            attributes={"bench_role": "client", "bench_cell": "c1", "bench_repetition": "1",
                        "bench_client": XSS, "bench_replica": str(i - 1)})
        for i in (2, 3)
    ]
    batch_id = await api.submit([service, *clients], attributes={"bench_session": f"s{XSS}"})
    await set_job(api, batch_id, 1, state="Running", time_serving=time.time(),
                  endpoint={"host": "10.0.0.5", "ports": {"main": 6379}, "scheme": "redis",
                            "ready_seconds": 0.25})
    await set_job(api, batch_id, 2, state="Success", exit_code=0)
    await set_job(api, batch_id, 3, state="Running")
    r = await api.client.post("/api/v1/bench/sessions",
                              json={"name": f"s{XSS}", "recipe": RECIPE, "batch_id": batch_id})
    assert r.status_code == 200, r.text
    session_id = int(r.json()["id"])
    values = {"n": (100, 120), "failures": (0, 2), "throughput": (1000.0, 1100.0), "p50_ms": (1.0, 1.5),
              "p90_ms": (2.0, 2.5), "p99_ms": (4.0, 7.0)}
    rows = [
        {"cell": "c1", "repetition": rep + 1, "client": XSS, "metric": metric, "value": v[rep],
         "unit": "ms" if metric.endswith("_ms") else "", "params": {"size": 64}}
        for metric, v in values.items() for rep in (0, 1)
    ]
    r = await api.client.put(f"/api/v1/bench/sessions/{session_id}/results",
                             json={"state": "running", "rows": rows})
    assert r.status_code == 200, r.text
    return session_id, batch_id


async def test_session_pages_show_the_apis_session_progress_and_results(api: Api) -> None:
    session_id, batch_id = await _session_with_results(api)
    listing = (await api.client.get("/ui/sessions")).text
    assert f'href="/ui/sessions/{session_id}"' in listing and XSS not in listing
    assert "s&lt;script&gt;alert(1)&lt;/script&gt;" in listing and 'href="/ui/sessions"' in listing

    html = (await api.client.get(f"/ui/sessions/{session_id}")).text
    assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    api_session = (await api.client.get(f"/api/v1/bench/sessions/{session_id}")).json()
    assert api_session["state"] == "running" and 'class="state s-running"' in html
    assert f'sse-connect="/ui/batches/{batch_id}/events"' in html  # live while the batch runs
    # results: each column is the mean of the API's values over repetitions
    results = (await api.client.get(f"/api/v1/bench/sessions/{session_id}/results")).json()
    row = html.split('id="result-c1-', 1)[1].split("</tr>", 1)[0]
    shown = dict(re.findall(r'data-metric="([^"]+)" data-mean="([^"]*)"', row))
    assert set(shown) == {"n", "failures", "throughput", "p50_ms", "p90_ms", "p99_ms"}
    for metric, text in shown.items():
        assert float(text) == mean(r["value"] for r in results if r["metric"] == metric), metric
    # the report's latency-against-throughput plot: a point per cell, the same means
    points = json.loads(html_lib.unescape(re.search(r'data-points="([^"]*)"', html).group(1)))  # type: ignore[union-attr]
    assert points == {XSS: [[float(shown["throughput"]), float(shown["p50_ms"]), float(shown["p99_ms"])]]}
    # the SLO verdict (p99 mean 5.5 > 5.0) fails
    verdicts = html.split('id="verdicts"', 1)[1].split("</table>", 1)[0]
    assert "p99_ms" in verdicts and "FAIL" in verdicts
    # services and clients: the API's job JSON
    service = (await api.client.get(f"/api/v1/batches/{batch_id}/jobs/1")).json()
    svc_row = row_of(html, "service-1")
    assert service["serving"] is True and service["endpoint"]["url"] in svc_row and "serving" in svc_row
    assert "0.25 s" in svc_row
    assert re.search(r'id="clients-done">\s*1 / 2', html)
    assert "c1" in re.search(r'id="running-cells">(.*?)</dd>', html, re.S).group(1)  # type: ignore[union-attr]
    batch_html = (await api.client.get(f"/ui/batches/{batch_id}")).text  # the batch links its session
    assert f'href="/ui/sessions/{session_id}"' in batch_html and XSS not in batch_html
    frag = (await api.client.get(f"/ui/sessions/{session_id}/progress")).text
    assert frag.startswith('<div id="session-progress"') and service["endpoint"]["url"] in frag
    # CSV = the API's rows
    exported = (await api.client.get(f"/ui/sessions/{session_id}/results.csv")).text
    got = list(csv.DictReader(io.StringIO(exported)))
    assert [(g["metric"], float(g["value"])) for g in got] == [(r["metric"], r["value"]) for r in results]


async def test_another_users_session_is_a_404_and_admins_see_it(api: Api) -> None:
    session_id, _ = await _session_with_results(api)
    bob = await api.new_user("bob", projects=("default",))
    for path in (f"/ui/sessions/{session_id}", f"/ui/sessions/{session_id}/progress",
                 f"/ui/sessions/{session_id}/results.csv"):
        r = await api.client.get(path, headers=bob)
        assert r.status_code == 404, path
        assert (await api.client.get(f"/api/v1/bench/sessions/{session_id}", headers=bob)).status_code == 404
    assert f"/ui/sessions/{session_id}" not in (await api.client.get("/ui/sessions", headers=bob)).text
    admin = await api.client.get(f"/ui/sessions/{session_id}", headers=api.admin)
    assert admin.status_code == 200 and 'id="results"' in admin.text
    r = await api.client.get("/ui/sessions/999999", follow_redirects=False)
    assert r.status_code == 404


def _write_sweep_files(home: Path, name: str, version: str, merged_keys: list[str]) -> str:
    root = local_bucket_url(home) + "/sweeps"
    layout = SweepLayout(root, name)
    base = Path(layout.base.removeprefix("file://"))
    (base / "versions").mkdir(parents=True)
    chunks = [[0, "k0", 0, 10], [1, "k1", 10, 10], [2, "k2", 20, 5], [3, "k3", 25, 5]]
    (base / "versions" / f"{version}.json").write_text(json.dumps({"version": version, "chunks": chunks}))
    merged = base / "merged" / version
    merged.mkdir(parents=True)
    table = pa.table({"chunk": [0], "y": [1.0]}).replace_schema_metadata(
        {CHUNKS_KEY: json.dumps(merged_keys).encode(), RESULT_COLUMNS_KEY: json.dumps(["y"]).encode()}
    )
    pq.write_table(table, merged / "part-000.parquet")
    return root


async def _sweep(api: Api, name: str, root: str, version: str) -> tuple[int, int]:
    attributes = {"name": f"sweep {name}", "sweep": name, "sweep_version": version, "sweep_storage": root}
    first = await api.submit(
        [job(i + 1, name=f"chunk-{i}-k{i}", attributes={"chunk": str(i), "chunk_key": f"k{i}"})
         for i in range(3)],
        attributes=attributes,
    )
    rerun = await api.submit([job(1, name="chunk-1-k1")], attributes=attributes)
    await set_job(api, first, 1, state="Success", exit_code=0, n_attempts=1)
    await set_job(api, first, 2, state="Failed", exit_code=3, n_attempts=2)
    await set_job(api, first, 3, state="Running", n_attempts=1)
    await set_job(api, rerun, 1, state="Success", exit_code=0, n_attempts=1)
    return first, rerun


async def test_sweep_pages_derive_chunks_from_the_batches_as_the_library_does(api: Api) -> None:
    root = _write_sweep_files(api.settings.home, "grid", "v1", ["k0"])
    first, rerun = await _sweep(api, "grid", root, "v1")
    listing = (await api.client.get("/ui/sweeps")).text
    assert 'href="/ui/sweeps/grid"' in listing and 'href="/ui/sweeps"' in listing
    assert re.search(r"<td[^>]*>\s*<a[^>]*>2</a>", row_of(listing, "sweep-grid"))  # two batches
    html = (await api.client.get("/ui/sweeps/grid")).text
    assert SweepLayout(root, "grid").merged("v1") in text_between(html, "sweep-dataset")
    assert "30 rows" in text_between(html, "sweep-chunks")
    groups = {c: row_of(html, f"chunk-{c}") for c in range(4)}
    assert 'data-group="merged"' in html.split('id="chunk-0"', 1)[1][:40]
    assert "0-9" in groups[0] and "10-19" in groups[1] and "25-29" in groups[3]
    # chunk 1: failed in the first batch, succeeded in the rerun (the newest job decides), 3 attempts
    assert html.split('id="chunk-1"', 1)[1][:40].count('data-group="succeeded"') == 1
    assert f'href="/ui/batches/{rerun}/jobs/1"' in groups[1]
    assert f'href="/ui/batches/{first}/jobs/2"' in groups[1]
    assert groups[1].index(f"{rerun}/1") < groups[1].index(f"{first}/2")  # newest first
    assert re.search(r'<td class="num">3</td>', groups[1])
    assert 'data-group="running"' in html.split('id="chunk-2"', 1)[1][:40]
    assert 'data-group="waiting"' in html.split('id="chunk-3"', 1)[1][:40] and "/ui/batches" not in groups[3]
    counts = dict(re.findall(r'id="count-(\w+)" data-count="(\d+)"', html))
    assert counts == {"merged": "1", "succeeded": "1", "running": "1", "failed": "0", "waiting": "1"}
    only = (await api.client.get("/ui/sweeps/grid", params={"group": "running"})).text
    assert 'id="chunk-2"' in only and 'id="chunk-1"' not in only
    paged = (await api.client.get("/ui/sweeps/grid", params={"limit": 2})).text
    assert 'id="chunk-1"' in paged and 'id="chunk-2"' not in paged and "after=1" in paged
    # live while a batch of the sweep runs: the newest one's stream; the chunks fragment it refetches
    assert f'sse-connect="/ui/batches/{rerun}/events"' in html
    frag = (await api.client.get("/ui/sweeps/grid/chunks", params={"group": "running"})).text
    assert frag.startswith('<div id="sweep-chunks-frag"')
    assert 'id="chunk-2"' in frag and 'id="chunk-1"' not in frag
    for b in (first, rerun):
        assert f'id="batch-{b}"' in html
        assert 'href="/ui/sweeps/grid"' in (await api.client.get(f"/ui/batches/{b}")).text


async def test_sweeps_pages_access_escaping_and_storage_outside_the_servers_bucket(api: Api) -> None:
    await _sweep(api, IMG_XSS, "file:///etc", "v1")  # storage the server must not read
    listing = (await api.client.get("/ui/sweeps")).text
    assert IMG_XSS not in listing and "&lt;img src=x onerror=alert(1)&gt;" in listing
    html = (await api.client.get("/ui/sweeps/" + "%3Cimg%20src%3Dx%20onerror%3Dalert(1)%3E")).text
    assert IMG_XSS not in html and 'id="chunk-0"' in html and "rows and merges are shown" in html
    batch_id = int(re.findall(r'id="batch-(\d+)"', html)[0])
    batch_html = (await api.client.get(f"/ui/batches/{batch_id}")).text
    link = "/ui/sweeps/%3Cimg%20src%3Dx%20onerror%3Dalert%281%29%3E"
    assert f'href="{link}"' in batch_html and IMG_XSS not in batch_html
    assert (await api.client.get(link)).status_code == 200
    carol = await api.new_user("carol")  # not a member of the batches' billing project
    for tail in ("", "/chunks"):
        r = await api.client.get(f"{link}{tail}", headers=carol)
        assert r.status_code == 404
    assert "onerror" not in (await api.client.get("/ui/sweeps", headers=carol)).text
    assert (await api.client.get("/ui/sweeps/nope")).status_code == 404
    r = await api.client.get("/ui/sweeps", headers={"Authorization": ""}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"].startswith("/ui/login")


def text_between(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</dd>', html, re.S)
    assert match, element_id
    return match.group(1)
