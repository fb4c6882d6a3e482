"""The web pages at the HTML level (no browser): access rules, login, CSRF, escaping, content = API."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from sqlalchemy import event, update
from test_api_support import Api, api_fixture, job  # noqa: F401

from corral.store.logs import log_path
from corral.store.tables import attempts, batches, billing_rates, daily_usage, jobs
from corral.ui.auth import COOKIE, csrf_for

XSS = "<script>alert(1)</script>"


def text_of(html: str, element_id: str) -> str:
    match = re.search(rf'id="{element_id}"[^>]*>(.*?)</', html, re.S)
    assert match, f"no #{element_id} in page"
    return match.group(1)


async def test_logged_out_pages_redirect_to_login(api: Api) -> None:
    for path in ("/ui/batches", "/ui/batches/1", "/ui/batches/1/jobs/1", "/ui/pools", "/ui/billing"):
        r = await api.client.get(path, headers={"Authorization": ""}, follow_redirects=False)
        assert r.status_code == 303, path
        assert r.headers["location"].startswith("/ui/login?next=" + path.split("?")[0])
    r = await api.client.get("/ui/login", params={"logged_out": 1}, headers={"Authorization": ""})
    assert r.status_code == 200 and 'name="token"' in r.text


async def test_embedded_default_logs_the_local_user_in(api: Api) -> None:
    """Loopback server, SQLite in its home, browser on this machine: opening /ui/login logs in as the
    local user of tokens.json; a server with its own database URL asks for a token."""
    api.client.headers.pop("Authorization")
    r = await api.client.get("/ui/login", params={"next": "/ui/billing"}, follow_redirects=False)
    assert r.status_code == 303 and r.headers["location"] == "/ui/billing"
    assert r.cookies[COOKIE] == api.tokens["token"]
    api.client.cookies.clear()
    api.settings.database_url = "postgresql+asyncpg://elsewhere/db"
    r = await api.client.get("/ui/login", follow_redirects=False)
    assert r.status_code == 200 and COOKIE not in r.cookies


async def test_login_sets_httponly_samesite_cookie_and_rejects_bad_tokens(api: Api) -> None:
    api.client.headers.pop("Authorization")
    r = await api.client.post("/ui/login", data={"token": "nope", "next": "/ui/billing"})
    assert r.status_code == 401 and "unknown token" in r.text
    assert COOKIE not in r.cookies
    r = await api.client.post(
        "/ui/login",
        data={"token": api.tokens["token"], "next": "https://evil.example/"},
        follow_redirects=False,
    )
    assert r.status_code == 303 and r.headers["location"] == "/ui/batches"  # never off-site
    cookie = r.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/ui" in cookie
    r = await api.client.get("/ui/batches")
    assert r.status_code == 200 and "alice" in r.text


async def test_actions_need_the_csrf_token_with_a_cookie_session(api: Api) -> None:
    batch_id = await api.submit([job(1, command="sleep 100")])
    token = api.tokens["token"]
    api.client.headers.pop("Authorization")
    api.client.cookies.set(COOKIE, token)
    r = await api.client.post(f"/ui/batches/{batch_id}/cancel", data={"csrf": "forged"})
    assert r.status_code == 403 and "csrf" in r.text
    assert api.hooks.cancelled == []
    page = (await api.client.get(f"/ui/batches/{batch_id}")).text
    assert csrf_for(token) in page
    r = await api.client.post(f"/ui/batches/{batch_id}/cancel", data={"csrf": csrf_for(token)})
    assert r.status_code == 303 and api.hooks.cancelled == [batch_id]
    r = await api.client.post(f"/ui/batches/{batch_id}/delete", data={"csrf": csrf_for(token)})
    assert r.status_code == 303
    r = await api.client.get(f"/ui/batches/{batch_id}")
    assert r.status_code == 404


async def test_another_users_batch_is_a_404(api: Api) -> None:
    bob = await api.new_user("bob")
    batch_id = await api.submit([job(1)])
    for path in (
        f"/ui/batches/{batch_id}",
        f"/ui/batches/{batch_id}/jobs/1",
        f"/ui/batches/{batch_id}/events",
        f"/ui/batches/{batch_id}/jobs/1/log/main",
        f"/ui/batches/{batch_id}/jobs/1/usage",
    ):
        r = await api.client.get(path, headers=bob)
        assert r.status_code == 404, path
        assert f"batch {batch_id} not found" in r.text
    listing = (await api.client.get("/ui/batches", params={"q": ""}, headers=bob)).text
    assert f'id="batch-{batch_id}"' not in listing
    r = await api.client.get("/ui/pools", headers=bob)
    assert r.status_code == 403


async def test_batches_list_is_mine_by_default_and_matches_the_api(api: Api) -> None:
    mine = await api.submit([job(1), job(2)], attributes={"name": XSS})
    carol = await api.new_user("carol", projects=("default",))
    theirs = await api.submit([job(1)], headers=carol, token="carol-1")
    html = (await api.client.get("/ui/batches")).text
    assert f'id="batch-{mine}"' in html and f'id="batch-{theirs}"' not in html
    assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    both = (await api.client.get("/ui/batches", params={"q": ""})).text
    assert f'id="batch-{theirs}"' in both
    status = (await api.client.get(f"/api/v1/batches/{mine}")).json()
    row = html.split(f'id="batch-{mine}"', 1)[1].split("</tr>", 1)[0]
    assert f"{status['n_completed']:,} / {status['n_jobs']:,}" in row and status["billing_project"] in row
    assert f'<span class="state s-{status["state"]}">{status["state"]}</span>' in row
    r = await api.client.get("/ui/batches", params={"q": "frobnicate"})
    assert r.status_code == 400 and "cannot understand" in r.text
    csp = r.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert " on" not in html.split("<body", 1)[1].replace(" onerror=&#34;", "")  # no inline handlers


async def test_batches_list_pages_with_the_api_cursor(api: Api) -> None:
    ids = [await api.submit([job(1)], token=f"p{i}") for i in range(5)]
    first = (await api.client.get("/ui/batches", params={"limit": 2})).text
    assert re.findall(r'id="batch-(\d+)"', first) == [str(ids[4]), str(ids[3])]
    next_url = re.search(r'href="([^"]+)" id="next-page"', first)
    assert next_url
    second = (await api.client.get(next_url.group(1).replace("&amp;", "&"))).text
    assert re.findall(r'id="batch-(\d+)"', second) == [str(ids[2]), str(ids[1])]


async def test_batch_page_counts_jobs_and_escapes_names(api: Api) -> None:
    batch_id = await api.submit([job(j, name=f"{XSS}{j}") for j in range(1, 6)])
    async with api.engine.begin() as conn:
        for state in ("Running", "Success"):  # legal moves only (the test store's trigger checks)
            await conn.execute(
                update(jobs).where(jobs.c.batch_id == batch_id, jobs.c.job_id.in_([1, 2])).values(state=state)
            )
    html = (await api.client.get(f"/ui/batches/{batch_id}")).text
    assert XSS not in html
    assert re.search(r'data-state="Success"><i class="dot s-success"></i>Success <b>2</b>', html)
    assert re.search(r'data-state="Ready"><i class="dot s-ready"></i>Ready <b>3</b>', html)
    filtered = (await api.client.get(f"/ui/batches/{batch_id}", params={"state": "success"})).text
    assert re.findall(r'id="job-(\d+)"', filtered) == ["1", "2"]
    api_jobs = (await api.client.get(f"/api/v1/batches/{batch_id}/jobs", params={"state": "success"})).json()
    assert [j["job_id"] for j in api_jobs["jobs"]] == [1, 2]
    paged = await api.client.get(f"/ui/batches/{batch_id}/jobs-table", params={"limit": 2, "last_job_id": 1})
    assert re.findall(r'id="job-(\d+)"', paged.text) == ["2", "3"]
    bad = await api.client.get(f"/ui/batches/{batch_id}", params={"q": "frobnicate"})
    assert bad.status_code == 400 and "cannot understand" in bad.text
    assert f"batch {batch_id}" in bad.text.lower()  # the page itself, with the error in it
    too_many = await api.client.get(f"/ui/batches/{batch_id}/jobs-table", params={"limit": 201})
    assert 400 <= too_many.status_code < 500 and "limit" in too_many.text
    assert 'id="dag"' in html  # small batch: a graph
    fragment = (await api.client.get(f"/ui/batches/{batch_id}/dag")).text
    assert fragment.count("<rect") == 5 and 'class="s-success" data-job-id="1"' in fragment


async def test_job_page_shows_reason_logs_escaped_and_api_content(api: Api) -> None:
    batch_id = await api.submit([job(1, name="worker", env=[{"name": "MODE", "value": "fast"}])])
    now = time.time()
    async with api.engine.begin() as conn:
        await conn.execute(
            attempts.insert().values(
                batch_id=batch_id,
                job_id=1,
                attempt_id=1,
                instance_name="inst-1",
                cores_mcpu=500,
                memory_bytes=256 << 20,
                state="ended",
                end_reason="failed",
                exit_code=3,
                time_assigned=now - 5,
                time_started=now - 4,
                time_ended=now,
            )
        )
        await conn.execute(
            update(jobs).where(jobs.c.batch_id == batch_id, jobs.c.job_id == 1).values(state="Running")
        )
        await conn.execute(
            update(jobs)
            .where(jobs.c.batch_id == batch_id, jobs.c.job_id == 1)
            .values(
                state="Failed", exit_code=3, n_attempts=1, status={"exit_code": 3, "container_statuses": {}}
            )
        )
        await conn.execute(update(batches).where(batches.c.id == batch_id).values(n_completed=1, n_failed=1))
    path = log_path(api.settings.log_dir, batch_id, 1, 1, "main")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"line one\n{XSS}\n")
    html = (await api.client.get(f"/ui/batches/{batch_id}/jobs/1")).text
    assert XSS not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert text_of(html, "job-reason") == "the command exited with code 3"  # the API's reason
    assert "inst-1" in html and "MODE" in html and "fast" in html
    api_job = (await api.client.get(f"/api/v1/batches/{batch_id}/jobs/1")).json()
    assert api_job["spec"]["command"][-1] in html
    chunk = await api.client.get(f"/ui/batches/{batch_id}/jobs/1/log/main", params={"offset": 5})
    assert chunk.text == f"one\n{XSS}\n" and chunk.headers["X-Log-Size"] == str(path.stat().st_size)
    download = await api.client.get(f"/ui/batches/{batch_id}/jobs/1/log/main/download")
    assert download.text == path.read_text() and "attachment" in download.headers["content-disposition"]
    r = await api.client.get(f"/ui/batches/{batch_id}/jobs/1/log/sideways")
    assert r.status_code == 400 and "step" in r.text


async def test_usage_route_returns_the_stored_series(api: Api) -> None:
    from corral.store import usage as usage_store

    batch_id = await api.submit([job(1)])
    now = time.time()
    async with api.engine.begin() as conn:
        await conn.execute(
            attempts.insert().values(
                batch_id=batch_id,
                job_id=1,
                attempt_id=1,
                instance_name="i",
                cores_mcpu=500,
                memory_bytes=256 << 20,
                state="running",
                time_assigned=now,
            )
        )
        samples = [usage_store.UsageSample(batch_id, 1, 1, now + i, 250 * i, (i + 1) << 20) for i in range(3)]
        await usage_store.insert_samples(conn, samples)
        await usage_store.insert_samples(conn, samples[:1])  # a report sent twice changes nothing
    u = (await api.client.get(f"/ui/batches/{batch_id}/jobs/1/usage")).json()
    assert u["cpu_cores"] == [0.0, 0.25, 0.5] and u["memory_bytes"] == [1 << 20, 2 << 20, 3 << 20]
    assert u["cpu_limit_cores"] == 0.5 and u["memory_limit_bytes"] == 256 << 20


async def _ledger_usage(api: Api, project: str, user: str, day: str, resource: str, usage: int) -> None:
    """A roll-up row as the driver's ledger writes it (cpu/site at 1.0 per core-hour, then 0.5)."""
    async with api.engine.begin() as conn:
        if not (await conn.execute(billing_rates.select())).first():
            for version, rate in ((1, 1.0), (2, 0.5)):
                await conn.execute(
                    billing_rates.insert().values(
                        resource="cpu/site", version=version, rate=rate, time_effective=0.0
                    )
                )
        await conn.execute(
            daily_usage.insert().values(
                billing_project=project, user=user, day=day, resource=resource, usage=usage
            )
        )


def _cells(html: str, table_id: str) -> dict[str, float]:
    body = html.split(f'id="{table_id}"', 1)[1].split("</table>", 1)[0]
    return {k: float(v) for k, v in re.findall(r'data-key="([^"]*)" data-cost="([^"]*)"', body)}


async def test_billing_page_and_csv_show_the_ledgers_daily_spend_as_the_api_reports_it(api: Api) -> None:
    core_hour = 1000 * 3_600_000
    await api.client.post("/api/v1/billing-projects", json={"name": "lab"}, headers=api.admin)
    await api.client.post("/api/v1/billing-projects/lab/users/alice", headers=api.admin)
    await _ledger_usage(api, "default", "alice", "2026-03-01", "cpu/site/1", 2 * core_hour)
    await _ledger_usage(api, "default", "alice", "2026-03-01", "cpu/site/2", 3 * core_hour)
    await _ledger_usage(api, "lab", "bob", "2026-03-02", "cpu/site/1", core_hour // 4)
    await _ledger_usage(api, "other", "carol", "2026-03-02", "cpu/site/1", 7 * core_hour)  # not alice's
    await _ledger_usage(api, "default", "alice", "2026-02-27", "cpu/site/1", 9 * core_hour)  # before
    a = await api.submit([job(1)], token="c1")  # a batch's own cost is not what the page sums
    async with api.engine.begin() as conn:
        await conn.execute(update(batches).where(batches.c.id == a).values(cost=100.0))
    dates = {"start": "2026-02-28", "end": "2026-03-05"}
    html = (await api.client.get("/ui/billing", params=dates)).text
    for by, table in (("project", "by-project"), ("user", "by-user"), ("day", "by-day")):
        r = await api.client.get(
            "/api/v1/billing/report", params={"by": by, "since": dates["start"], "until": dates["end"]}
        )
        reported = r.json()
        assert _cells(html, table) == {row["key"]: row["cost"] for row in reported["rows"]}, by
        assert text_of(html, "spend-total") == f"${reported['total']:,.2f}"
    assert _cells(html, "by-project") == {"default": 3.5, "lab": 0.25}  # 2 x 1.0 + 3 x 0.5; a quarter
    assert "carol" not in html and "$100.00" not in html
    admin_html = (await api.client.get("/ui/billing", params=dates, headers=api.admin)).text
    assert _cells(admin_html, "by-project") == {"default": 3.5, "lab": 0.25, "other": 7.0}
    csv = await api.client.get("/ui/billing.csv", params=dates)
    lines = csv.text.strip().splitlines()
    assert lines[0] == "day,billing_project,user,resource,usage,cost"
    assert [(*line.rsplit(",", 1)[:1], float(line.rsplit(",", 1)[1])) for line in lines[1:]] == [
        (f"2026-03-01,default,alice,cpu/site/1,{2 * core_hour}", 2.0),
        (f"2026-03-01,default,alice,cpu/site/2,{3 * core_hour}", 1.5),
        (f"2026-03-02,lab,bob,cpu/site/1,{core_hour // 4}", 0.25),
    ]
    r = await api.client.get("/ui/billing", params={"start": "yesterday"})
    assert r.status_code == 400 and "start" in r.text
    # the batch page's project spend is the ledger's all-time spend: the API's accrued_cost
    accrued = (await api.client.get("/api/v1/billing-projects/default")).json()["accrued_cost"]
    assert accrued == 12.5  # 2 + 1.5 in range, 9 before it
    assert f"default: ${accrued:,.2f} spent" in (await api.client.get(f"/ui/batches/{a}")).text


async def test_pools_page_pages_instances_and_sums_capacity_over_all_of_them(api: Api) -> None:
    from corral.store import instances as instance_store

    batch_id = await api.submit([job(1), job(2)])
    now = time.time()
    async with api.engine.begin() as conn:
        await instance_store.ensure_collection(conn, "gpu", kind="pool", provider="ssh", config={})
        for i in range(130):
            await instance_store.create_instance(
                conn,
                name=f"gpu-{i:03d}",
                collection="gpu",
                cores_mcpu=4000,
                memory_bytes=8 << 30,
                token_hash=f"h{i}",
                metadata={"last_error": "ssh: key refused <b>"} if i == 0 else {},
                now=now + i,
                gpus=2,
                gpu_type="a100",
            )
            await instance_store.activate_instance(conn, f"gpu-{i:03d}", 4000, 8 << 30, now + i)
        await conn.execute(
            attempts.insert().values(
                batch_id=batch_id,
                job_id=1,
                attempt_id=1,
                instance_name="gpu-000",
                cores_mcpu=500,
                memory_bytes=1 << 20,
                state="running",
                time_assigned=now,
            )
        )
        await conn.execute(
            update(jobs).where(jobs.c.batch_id == batch_id, jobs.c.job_id == 1).values(state="Running")
        )
    html = (await api.client.get("/ui/pools", headers=api.admin)).text
    rows = re.findall(r'<tr id="instance-(gpu-\d+)">', html)
    assert rows == [f"gpu-{i:03d}" for i in range(129, 29, -1)]  # newest first, one page
    collection = html.split('id="collection-gpu"', 1)[1].split("</tr>", 1)[0]
    assert "519.5 / 520" in collection and "260 / 260" in collection  # every active instance counted
    assert re.search(
        r'<td>default</td><td>alice</td><td class="num">1</td><td class="num">0.5</td>\s*'
        r'<td class="num">1</td><td class="num">0.5</td>',
        html,
    )
    next_url = re.search(r'href="([^"]+)" id="next-page"', html)
    assert next_url
    rest = (await api.client.get(next_url.group(1).replace("&amp;", "&"), headers=api.admin)).text
    assert re.findall(r'<tr id="instance-(gpu-\d+)">', rest) == [f"gpu-{i:03d}" for i in range(29, -1, -1)]
    assert "ssh: key refused &lt;b&gt;" in rest and 'id="next-page"' not in rest


async def _submit_large(api: Api, n: int) -> int:
    """A batch of n jobs: job 1 and n-1 children of it (they stay Pending)."""
    r = await api.client.post("/api/v1/batches/create", json={"token": f"large-{n}", "n_jobs": n})
    batch_id, update_id = r.json()["id"], r.json()["update_id"]
    for start in range(1, n + 1, 10_000):
        bunch = [job(j, parents=[] if j == 1 else [1]) for j in range(start, min(n, start + 9_999) + 1)]
        r = await api.client.post(f"/api/v1/batches/{batch_id}/updates/{update_id}/jobs/create", json=bunch)
        assert r.status_code == 200, r.text
    r = await api.client.patch(f"/api/v1/batches/{batch_id}/updates/{update_id}/commit")
    assert r.status_code == 200, r.text
    return int(batch_id)


@pytest.mark.parametrize("db_kind", ["postgres"])
async def test_a_100000_job_batch_page_is_a_few_small_queries(api: Api) -> None:
    batch_id = await _submit_large(api, 100_000)
    statements: list[str] = []

    def count(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        statements.append(statement)

    event.listen(api.engine.sync_engine, "before_cursor_execute", count)
    try:
        html = (await api.client.get(f"/ui/batches/{batch_id}")).text
    finally:
        event.remove(api.engine.sync_engine, "before_cursor_execute", count)
    assert len(re.findall(r'<tr id="job-', html)) == 50
    assert re.search(r'data-state="Pending"><i class="dot s-pending"></i>Pending <b>99,999</b>', html)
    assert 'id="dag"' not in html
    # batch, access, counts, project spend, one page of jobs, its attempts, the DAG guard: no query per job,
    # and every read of jobs is either an aggregate or a page (LIMIT)
    assert len(statements) <= 12, statements
    for s in statements:
        if "FROM jobs" in s:
            assert "LIMIT" in s.upper() or "count(" in s.lower(), s


async def test_admins_change_billing_project_members_from_the_page(api: Api) -> None:
    await api.new_user("dave")
    admin_token = api.tokens["admin_token"]
    api.client.headers.pop("Authorization")
    api.client.cookies.set(COOKIE, admin_token)
    csrf = csrf_for(admin_token)
    r = await api.client.post("/ui/billing/default/members", data={"csrf": csrf, "user": "dave"})
    assert r.status_code == 303
    projects = (await api.client.get("/api/v1/billing-projects", headers=api.admin)).json()
    assert "dave" in next(p for p in projects if p["billing_project"] == "default")["users"]
    assert 'name="remove" value="dave"' in (await api.client.get("/ui/billing")).text
    r = await api.client.post("/ui/billing/default/members", data={"csrf": csrf, "remove": "dave"})
    assert r.status_code == 303
    projects = (await api.client.get("/api/v1/billing-projects", headers=api.admin)).json()
    assert "dave" not in next(p for p in projects if p["billing_project"] == "default")["users"]
    r = await api.client.post("/ui/billing/default/members", data={"csrf": csrf, "user": "nobody"})
    assert r.status_code == 404 and "nobody" in r.text
    api.client.cookies.set(COOKIE, api.tokens["token"])  # not an admin
    r = await api.client.post(
        "/ui/billing/default/members", data={"csrf": csrf_for(api.tokens["token"]), "user": "dave"}
    )
    assert r.status_code == 403


async def test_a_waiting_job_says_why_in_words(api: Api) -> None:
    batch_id = await api.submit([job(1), job(2)])
    why = "needs 64 cores; pool default's largest instance has 4"
    async with api.engine.begin() as conn:
        await conn.execute(
            update(jobs).where(jobs.c.batch_id == batch_id, jobs.c.job_id == 2).values(waiting_reason=why)
        )
    api_job = (await api.client.get(f"/api/v1/batches/{batch_id}/jobs/2")).json()
    assert api_job["waiting_reason"] == why
    html = (await api.client.get(f"/ui/batches/{batch_id}")).text
    escaped = f"waiting: {why}".replace("'", "&#39;")
    assert escaped in html.split('id="job-2"', 1)[1].split("</tr>", 1)[0]
    assert 'id="batch-waiting">1 waiting' in html
    page = (await api.client.get(f"/ui/batches/{batch_id}/jobs/2")).text
    assert text_of(page, "job-reason") == escaped
