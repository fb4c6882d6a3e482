"""The web pages in a real Chromium against a real server: content equals the API, escaping, no console
errors, access rules, live updates without reload, a 100,000-job batch paged; screenshots of each page."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path
from typing import Any

from playwright.sync_api import expect
from tests.acceptance.harness import RunningServer
from tests.ui.conftest import Tab

XSS_NAME = '<img src=x onerror="window.__xss=1">'


def job(job_id: int, command: str, parents: list[int] | None = None, **extra: Any) -> dict[str, Any]:
    return {
        "job_id": job_id,
        "process": {"type": "docker", "image": "ubuntu:24.04", "command": ["/bin/bash", "-c", command]},
        "in_update_parent_ids": parents or [],
        "resources": {"cpu": "1", "memory": "256Mi"},
        **extra,
    }


def wait_for(predicate: Any, what: str, timeout: float = 90.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not seen within {timeout:.0f}s: {what}")


def no_xss(tab: Tab) -> None:
    assert tab.page.evaluate("window.__xss") is None
    assert tab.errors == [], tab.errors


def test_batches_list_shows_what_the_api_returns(server: RunningServer, tab: Tab, artifacts: Path) -> None:
    ids = [server.submit([job(1, "true")], attributes={"name": f"{XSS_NAME} {i}"}) for i in range(3)]
    for batch_id in ids:
        server.wait(batch_id)
    tab.goto("/ui/batches")
    with server.client() as c:
        api = c.get("/api/v1/batches", params={"q": f"user:{tab_user(server)}"}).json()["batches"]
    rows = tab.page.locator("#batches tbody tr")
    expect(rows.first).to_be_visible()
    shown = [int(r.get_attribute("id").split("-")[1]) for r in rows.all()]
    assert shown[: len(api)] == [b["id"] for b in api][: len(shown)]
    for batch in api[:3]:
        row = tab.page.locator(f"#batch-{batch['id']}")
        expect(row.locator("td.name")).to_have_text(batch["attributes"].get("name", ""))
        expect(row.locator(".state")).to_have_text(batch["state"])
        expect(row).to_contain_text(f"{batch['n_completed']:,} / {batch['n_jobs']:,}")
    tab.page.screenshot(path=str(artifacts / "batches.png"), full_page=True)
    no_xss(tab)


def tab_user(server: RunningServer) -> str:
    with server.client() as c:
        return str(c.get("/api/v1/batches", params={"limit": 1}).json()["batches"][0]["user"])


def test_batch_page_updates_live_without_reload(
    server: RunningServer, tab: Tab, artifacts: Path, gates: Path
) -> None:
    gate = gates / uuid.uuid4().hex[:6]
    batch_id = server.submit(
        [job(1, f"while [ ! -e {gate} ]; do sleep 0.1; done; echo done", name=XSS_NAME), job(2, "true", [1])],
        attributes={"name": "live batch"},
    )
    wait_for(lambda: server.job(batch_id, 1)["state"] == "Running", "job 1 running")
    tab.goto(f"/ui/batches/{batch_id}")
    expect(tab.page.locator("#batch-state .state")).to_have_text("running")
    expect(tab.page.locator("#job-1 .state")).to_have_text("Running")
    tab.page.evaluate("window.__notReloaded = true")
    expect(tab.page.locator("html")).to_have_attribute("data-live", "open")  # listening before the change
    gate.touch()  # job 1 finishes, job 2 runs: the page hears it from the server, no reload
    expect(tab.page.locator("#batch-state .state")).to_have_text("success", timeout=60_000)
    expect(tab.page.locator("#job-1 .state")).to_have_text("Success", timeout=30_000)
    expect(tab.page.locator("#job-2 .state")).to_have_text("Success", timeout=30_000)
    assert tab.page.evaluate("window.__notReloaded") is True
    status = server.batch(batch_id)
    expect(tab.page.locator('#state-counts a[data-state="Success"] b')).to_have_text(
        f"{status['n_succeeded']:,}"
    )
    expect(tab.page.locator("#batch-cost")).to_contain_text("$")
    expect(tab.page.locator("#timeline rect")).to_have_count(2)
    expect(tab.page.locator("#dag rect")).to_have_count(2)
    expect(tab.page.locator('#dag rect[data-job-id="2"]')).to_have_class(re.compile("s-success"))
    tab.page.screenshot(path=str(artifacts / "batch.png"), full_page=True)
    no_xss(tab)


def test_job_page_tails_the_log_and_plots_usage(
    server: RunningServer, tab: Tab, artifacts: Path, gates: Path
) -> None:
    gate = gates / uuid.uuid4().hex[:6]
    script = (
        f"echo '<script>window.__xss=1</script> first line'; seq -f 'filler %g' 1 100; "
        f"( while [ ! -e {gate} ]; do :; done ) & "  # one busy core until the gate opens
        f"for i in $(seq 1 240); do [ -e {gate} ] && break; echo tick $i; sleep 0.5; done; wait"
    )
    batch_id = server.submit([job(1, script, name="burner", env=[{"name": "MODE", "value": "<b>x</b>"}])])
    wait_for(lambda: server.job(batch_id, 1)["state"] == "Running", "job running")
    tab.goto(f"/ui/batches/{batch_id}/jobs/1")
    expect(tab.page.locator("#job-state .state")).to_have_text("Running")
    expect(tab.page.locator("#log-main")).to_contain_text("tick", timeout=30_000)  # tailed while running
    expect(tab.page.locator("#log-main")).to_contain_text("<script>window.__xss=1</script> first line")
    tab.page.evaluate("window.__notReloaded = true")
    log = tab.page.locator("#log-main")

    def ticks() -> int:
        return int(log.inner_text().count("tick"))

    # Scrolled up to read: new lines arrive but the view stays where the reader put it.
    log.evaluate("el => { el.scrollTop = 0; }")
    seen = ticks()
    wait_for(lambda: ticks() > seen, "more of the log while scrolled up", 60)
    assert log.evaluate("el => el.scrollTop") == 0
    assert log.evaluate("el => el.scrollHeight > el.clientHeight")  # the log does overflow its box
    # Back at the end: it follows the log again.
    log.evaluate("el => { el.scrollTop = el.scrollHeight; }")
    seen = ticks()
    wait_for(lambda: ticks() > seen, "more of the log at the end", 60)
    assert log.evaluate("el => el.scrollTop + el.clientHeight >= el.scrollHeight - 4")
    gate.touch()
    expect(tab.page.locator("#job-state .state")).to_have_text("Success", timeout=60_000)
    assert tab.page.evaluate("window.__notReloaded") is True
    api_job = server.job(batch_id, 1)
    expect(tab.page.locator("#job-reason")).to_have_text("succeeded (exit code 0)")
    expect(tab.page.locator("#command")).to_have_text(" ".join(api_job["spec"]["command"]))
    expect(tab.page.locator("#env")).to_contain_text("<b>x</b>")
    with server.client() as c:
        attempts = c.get(f"/api/v1/batches/{batch_id}/jobs/1/attempts").json()
    expect(tab.page.locator("#attempts tbody tr")).to_have_count(len(attempts))
    expect(tab.page.locator("#attempts")).to_contain_text(attempts[0]["instance_name"])
    tab.page.reload()  # the finished page: usage plots from the stored series
    with server.client() as c:
        usage = c.get(f"/ui/batches/{batch_id}/jobs/1/usage").json()
    # a busy loop registers (how much depends on the shared machine; a sleeping job reads ~0)
    assert len(usage["time"]) >= 2 and max(usage["cpu_cores"]) > 0.05, usage
    assert all(m > 0 for m in usage["memory_bytes"]), usage
    expect(tab.page.locator("#usage-cpu .uplot")).to_have_count(1)
    expect(tab.page.locator("#usage-memory .uplot")).to_have_count(1)
    download = tab.page.locator('.log-panel[data-step="main"] a[download]')
    with tab.page.expect_download() as got:
        download.click()
    assert "first line" in Path(got.value.path()).read_text()
    tab.page.screenshot(path=str(artifacts / "job.png"), full_page=True)
    no_xss(tab)


def test_another_users_batch_is_a_404_and_logout_needs_login(
    server: RunningServer, tab: Tab, browser: Any, artifacts: Path
) -> None:
    batch_id = server.submit([job(1, "true")])
    with server.client(server.admin_token) as c:
        r = c.post("/api/v1/users", json={"name": f"bob{uuid.uuid4().hex[:4]}"})
        assert r.status_code == 200, r.text
        bob_token = r.json()["token"]
    context = browser.new_context()
    bob = Tab(context.new_page(), server.url)
    bob.goto("/ui/login?logged_out=1")
    bob.page.fill("#token", bob_token)
    bob.page.click("button[type=submit]")
    expect(bob.page).to_have_url(re.compile(r"/ui/batches$"))
    response = bob.goto(f"/ui/batches/{batch_id}")
    assert response.status == 404
    expect(bob.page.locator("#error")).to_contain_text(f"batch {batch_id} not found")
    bob.page.screenshot(path=str(artifacts / "not-found.png"))
    bob.errors = [e for e in bob.errors if "404" not in e]  # the browser logs the 404 document itself
    assert bob.errors == []
    bob.page.click("text=Log out")
    expect(bob.page.locator("#token")).to_be_visible()
    assert bob.page.request.get(server.url + "/ui/batches", max_redirects=0).status == 303
    bob.page.screenshot(path=str(artifacts / "login.png"))
    context.close()


def test_admin_pages_pools_and_billing(server: RunningServer, browser: Any, artifacts: Path) -> None:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    admin = Tab(context.new_page(), server.url)
    admin.goto("/ui/login?logged_out=1")
    admin.page.fill("#token", server.admin_token)
    admin.page.click("button[type=submit]")
    admin.goto("/ui/pools")
    expect(admin.page.locator("#instances tbody tr").first).to_contain_text("active")
    expect(admin.page.locator("#collections")).to_contain_text("default")
    admin.page.screenshot(path=str(artifacts / "pools.png"), full_page=True)
    admin.goto("/ui/billing")
    with server.client(server.admin_token) as c:
        projects = c.get("/api/v1/billing-projects").json()
    for project in projects:
        row = admin.page.locator(f"#project-{project['billing_project']}")
        expect(row).to_contain_text(", ".join(project["users"]))
    with admin.page.expect_download() as got:
        admin.page.click("#csv")
    assert Path(got.value.path()).read_text().startswith("day,billing_project,user,resource,usage,cost")
    admin.page.screenshot(path=str(artifacts / "billing.png"), full_page=True)
    assert admin.errors == []
    context.close()


def test_a_100000_job_batch_page_is_paged(server: RunningServer, tab: Tab, artifacts: Path) -> None:
    """Job 1 sleeps; 99,999 children wait on it, so the batch stays this big while the page is read."""
    n = 100_000
    with server.client() as c:
        created = c.post(
            "/api/v1/batches/create",
            json={"token": uuid.uuid4().hex, "n_jobs": n, "attributes": {"name": "huge"}},
        ).json()
        batch_id, update_id = created["id"], created["update_id"]
        bunch_size = 10_000
        for start in range(1, n + 1, bunch_size):
            bunch = [
                job(j, "sleep 600" if j == 1 else "true", [] if j == 1 else [1])
                for j in range(start, min(n, start + bunch_size - 1) + 1)
            ]
            r = c.post(f"/api/v1/batches/{batch_id}/updates/{update_id}/jobs/create", json=bunch, timeout=300)
            assert r.status_code == 200, r.text
        r = c.patch(f"/api/v1/batches/{batch_id}/updates/{update_id}/commit", timeout=300)
        assert r.status_code == 200, r.text
    try:
        tab.goto(f"/ui/batches/{batch_id}")
        rows = tab.page.locator("#jobs tbody tr")
        expect(rows).to_have_count(50)
        expect(tab.page.locator('#state-counts a[data-state="Pending"] b')).to_have_text(
            re.compile(r"^99,99[89]$")
        )
        expect(tab.page.locator("#dag")).to_have_count(0)  # too big for a graph
        tab.page.click("#next-page")
        expect(tab.page.locator("#jobs tbody tr").first).to_have_attribute("id", "job-51")
        expect(tab.page.locator("#jobs tbody tr")).to_have_count(50)
        tab.page.screenshot(path=str(artifacts / "batch-100000.png"))
        assert tab.errors == []
    finally:
        with server.client() as c:
            c.patch(f"/api/v1/batches/{batch_id}/cancel")
