"""Sessions' and sweeps' pages in a real Chromium against a real server: a session's progress updates live
without reload and its results equal the API's; a real sweep's chunks equal what the sweeps library
reports; another user's session and sweep are 404s; no console errors; screenshots."""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from statistics import mean
from typing import Any

import pytest
from playwright.sync_api import expect
from tests.acceptance.harness import RunningServer
from tests.acceptance.sweep_helpers import FIT, py_command
from tests.ui.conftest import Tab
from tests.ui.test_pages_browser import job, no_xss, wait_for

import corral
from corral.sweeps import submit
from corral.sweeps.storage import local_bucket_url

XSS = '<img src=x onerror="window.__xss=1">'
RECIPE = {"name": "r", "service": {"type": "redis"}, "clients": [{"type": "redis-benchmark"}]}


@pytest.fixture(scope="module")
def bob(server: RunningServer, browser: Any) -> Iterator[Tab]:
    """Another user, in no billing project of the local user's, logged in through the form."""
    with server.client(server.admin_token) as c:
        r = c.post("/api/v1/users", json={"name": f"bob{uuid.uuid4().hex[:4]}"})
        assert r.status_code == 200, r.text
        token = r.json()["token"]
    context = browser.new_context()
    tab = Tab(context.new_page(), server.url)
    tab.goto("/ui/login?logged_out=1")
    tab.page.fill("#token", token)
    tab.page.click("button[type=submit]")
    expect(tab.page).to_have_url(re.compile(r"/ui/batches$"))
    yield tab
    context.close()


@pytest.fixture(autouse=True, scope="module")
def patient_expectations() -> None:
    """Pages on a loaded 2-core machine can take seconds: assertions wait up to 30 s, not Playwright's 5."""
    expect.set_options(timeout=30_000)


def assert_404(tab: Tab, path: str) -> None:
    response = tab.goto(path)
    assert response.status == 404, path
    tab.errors = [e for e in tab.errors if "404" not in e]  # the browser logs the 404 document itself
    assert tab.errors == []


def test_a_sessions_page_updates_live_and_shows_the_apis_results(
    server: RunningServer, tab: Tab, bob: Tab, artifacts: Path, gates: Path
) -> None:
    gate = gates / uuid.uuid4().hex[:6]
    client_attrs = {"bench_role": "client", "bench_cell": "c1", "bench_repetition": "1",
                    "bench_client": "redis-benchmark", "bench_replica": "1"}
    batch_id = server.submit(
        [job(1, "true", name="svc-c1-r1",
             attributes={"bench_role": "service", "bench_cells": "c1", "bench_repetition": "1"}),
         job(2, f"while [ ! -e {gate} ]; do sleep 0.1; done", name="redis-benchmark-c1-r1-1",
             attributes=client_attrs)],
        attributes={"name": "bench:ui", "bench_session": "ui"},
    )
    with server.client() as c:
        body = {"name": f"ui {XSS}", "recipe": RECIPE, "batch_id": batch_id}
        r = c.post("/api/v1/bench/sessions", json=body)
        assert r.status_code == 200, r.text
        session_id = r.json()["id"]
    wait_for(lambda: server.job(batch_id, 2)["state"] == "Running", "the client job running")
    tab.goto("/ui/sessions")
    expect(tab.page.locator(f"#session-{session_id} td.name")).to_have_text(f"ui {XSS}")
    tab.page.screenshot(path=str(artifacts / "sessions.png"), full_page=True)
    tab.page.click(f"#session-{session_id} td.name a")
    expect(tab.page.locator("h1 .name")).to_have_text(f"ui {XSS}")
    expect(tab.page.locator("#clients-done")).to_have_text("0 / 1")
    expect(tab.page.locator("#running-cells")).to_have_text("c1")
    expect(tab.page.locator(".live-dot")).to_be_visible()
    expect(tab.page.locator("html")).to_have_attribute("data-live", "open")  # listening before the change
    tab.page.evaluate("window.__marker = 1")  # gone if the page reloads
    gate.touch()
    expect(tab.page.locator("#clients-done")).to_have_text("1 / 1", timeout=90_000)
    expect(tab.page.locator("#session-batch .state")).to_have_text("success", timeout=90_000)
    assert tab.page.evaluate("window.__marker") == 1
    service = server.job(batch_id, 1)
    expect(tab.page.locator("#service-1 .state")).to_have_text(service["state"])
    # the runner stores the results (as `corral bench report` does); the page shows their means
    rows = [{"cell": "c1", "repetition": rep, "client": "redis-benchmark", "metric": m, "value": v * rep,
             "unit": "ms" if m.endswith("_ms") else "", "params": {}}
            for rep in (1, 2)
            for m, v in {"n": 100, "failures": 1, "throughput": 500.0, "p50_ms": 0.5, "p90_ms": 0.9,
                         "p99_ms": 1.5}.items()]
    with server.client() as c:
        r = c.put(f"/api/v1/bench/sessions/{session_id}/results", json={"state": "success", "rows": rows})
        assert r.status_code == 200, r.text
        results = c.get(f"/api/v1/bench/sessions/{session_id}/results").json()
        state = c.get(f"/api/v1/bench/sessions/{session_id}").json()["state"]
    tab.page.reload()
    expect(tab.page.locator("#session-state .state")).to_have_text(state)
    for metric in ("n", "failures", "throughput", "p50_ms", "p90_ms", "p99_ms"):
        cell = tab.page.locator(f'#results td[data-metric="{metric}"]')
        expected = mean(r["value"] for r in results if r["metric"] == metric)
        assert float(cell.get_attribute("data-mean") or "nan") == expected, metric
    expect(tab.page.locator('#latency-plot [data-client="redis-benchmark"] canvas').first).to_be_visible()
    with tab.page.expect_download() as got:
        tab.page.click("#results-csv")
    assert len(Path(got.value.path()).read_text().strip().splitlines()) == len(results) + 1
    tab.page.screenshot(path=str(artifacts / "session.png"), full_page=True)
    no_xss(tab)
    assert_404(bob, f"/ui/sessions/{session_id}")
    bob.goto("/ui/sessions")
    expect(bob.page.locator(f"#session-{session_id}")).to_have_count(0)


def test_a_sweeps_page_shows_what_the_sweeps_library_reports(
    server: RunningServer, tab: Tab, bob: Tab, artifacts: Path
) -> None:
    backend = corral.ServiceBackend(server.url, server.token, home=server.home)
    name = f"uigrid{uuid.uuid4().hex[:4]}"
    bucket = local_bucket_url(server.home) + "/sweeps"  # the server's own corral-local bucket
    sweep = corral.Sweep(name, {"a": list(range(6)), "b": [0.0, 1.0]}, py_command(FIT), chunk_size=4,
                         cpu=0.5, backend=backend, schema={"y": "float64"}, results_url=bucket)
    status = sweep.run(progress=False, timeout=300)
    assert status.complete, status.failures
    client = backend.client()
    newest = submit.newest_jobs(client, status.batches)
    tab.goto("/ui/sweeps")
    tab.page.click(f"#sweep-{name} td.name a")
    expect(tab.page.locator("#sweep-name")).to_have_text(name)
    expect(tab.page.locator("#sweep-dataset code").first).to_have_text(sweep.results_path())
    expect(tab.page.locator("#sweep-version code")).to_have_text(status.version)
    expect(tab.page.locator("#sweep-chunks")).to_contain_text(f"{status.n_chunks} · {status.n_rows} rows")
    expect(tab.page.locator("#count-merged")).to_have_attribute("data-count", str(status.merged))
    chunk_rows = tab.page.locator("#chunks tbody tr")
    expect(chunk_rows).to_have_count(status.n_chunks)
    for chunk in sweep.chunks:
        row = tab.page.locator(f"#chunk-{chunk.index}")
        expect(row).to_have_attribute("data-group", "merged")
        expect(row).to_contain_text(f"{chunk.start}-{chunk.start + chunk.n_rows - 1}")
        found = newest[chunk.key]
        expect(row.locator(f'a[href="/ui/batches/{found.batch_id}/jobs/{found.job_id}"]')).to_have_count(1)
    tab.page.screenshot(path=str(artifacts / "sweep.png"), full_page=True)
    tab.goto("/ui/sweeps")
    tab.page.screenshot(path=str(artifacts / "sweeps.png"), full_page=True)
    no_xss(tab)
    assert_404(bob, f"/ui/sweeps/{name}")


def test_a_running_sweeps_chunks_update_live_without_reload(
    server: RunningServer, tab: Tab, artifacts: Path, gates: Path
) -> None:
    gate = gates / uuid.uuid4().hex[:6]
    name = f"uilive{uuid.uuid4().hex[:4]}"
    batch_id = server.submit(
        [job(1, f"while [ ! -e {gate} ]; do sleep 0.1; done", name="chunk-0-aaaa"),
         job(2, "true", name="chunk-1-bbbb")],
        attributes={"name": f"sweep {name}", "sweep": name, "sweep_version": "v1",
                    "sweep_storage": "s3://not-the-servers/sweeps"},
    )
    wait_for(lambda: server.job(batch_id, 1)["state"] == "Running", "chunk 0 running")
    tab.goto(f"/ui/sweeps/{name}")
    expect(tab.page.locator("#chunk-0")).to_have_attribute("data-group", "running")
    expect(tab.page.locator("html")).to_have_attribute("data-live", "open")  # listening before the change
    tab.page.evaluate("window.__marker = 1")
    gate.touch()
    expect(tab.page.locator("#chunk-0")).to_have_attribute("data-group", "succeeded", timeout=90_000)
    expect(tab.page.locator("#count-succeeded")).to_have_attribute("data-count", "2")
    assert tab.page.evaluate("window.__marker") == 1
    for chunk, job_id in ((0, 1), (1, 2)):
        link = tab.page.locator(f'#chunk-{chunk} a[href="/ui/batches/{batch_id}/jobs/{job_id}"]')
        expect(link).to_have_count(1)
    tab.page.screenshot(path=str(artifacts / "sweep-live.png"), full_page=True)
    no_xss(tab)
