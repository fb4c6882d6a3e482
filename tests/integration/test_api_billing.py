"""Billing routes in-process on SQLite and PostgreSQL: who sees which project's spend, the project
lifecycle and its refusals, limits and their validation, reports."""

from __future__ import annotations

from sqlalchemy import update
from test_api_support import Api, api_fixture, job  # noqa: F401

from corral.store.tables import batches, billing_rates, daily_usage

HOUR_OF_A_CORE = 1000 * 3_600_000  # usage of one core for one hour (milli-cores x ms)


async def _spend(api: Api, project: str, user: str, day: str, core_hours: int) -> None:
    """Ledger rows as the driver writes them: `core_hours` at 1.0 per core-hour."""
    async with api.engine.begin() as conn:
        if not (await conn.execute(billing_rates.select())).first():
            await conn.execute(billing_rates.insert().values(resource="cpu/site", version=1, rate=1.0,
                                                             time_effective=0.0))
        usage = core_hours * HOUR_OF_A_CORE
        await conn.execute(daily_usage.insert().values(billing_project=project, user=user, day=day,
                                                       resource="cpu/site/1", usage=usage))


async def _report(api: Api, headers: dict[str, str], **params: str) -> list[tuple[str, float]]:
    r = await api.client.get("/api/v1/billing/report", params=params, headers=headers)
    assert r.status_code == 200, r.text
    return [(row["key"], row["cost"]) for row in r.json()["rows"]]


async def test_a_user_cannot_read_another_projects_spend(api: Api) -> None:
    for name in ("lab", "other"):
        assert (await api.client.post("/api/v1/billing-projects", json={"name": name},
                                      headers=api.admin)).is_success
    bob = await api.new_user("bob", projects=("lab",))
    await _spend(api, "lab", "bob", "2026-03-01", 2)
    await _spend(api, "other", "admin", "2026-03-02", 5)
    assert (await api.client.get("/api/v1/billing-projects/lab", headers=bob)).json()["accrued_cost"] == 2.0
    for path, params in (("/api/v1/billing-projects/other", {}),
                         ("/api/v1/billing/report", {"billing_project": "other"})):
        r = await api.client.get(path, params=params, headers=bob)
        assert r.status_code == 404 and "other" in r.json()["message"], r.text
    mine = (await api.client.get("/api/v1/billing/report", params={"by": "project"}, headers=bob)).json()
    assert [(row["key"], row["cost"]) for row in mine["rows"]] == [("lab", 2.0)] and mine["total"] == 2.0
    assert await _report(api, api.admin, by="project") == [("lab", 2.0), ("other", 5.0)]
    assert await _report(api, api.admin, by="day", since="2026-03-02", until="2026-03-31") == [
        ("2026-03-02", 5.0)]
    assert await _report(api, api.admin, by="user") == [("admin", 5.0), ("bob", 2.0)]
    r = await api.client.get("/api/v1/billing/report", params={"since": "March"}, headers=api.admin)
    assert r.status_code == 400 and r.json()["field"] == "since"
    r = await api.client.get("/api/v1/billing/report", params={"by": "month"}, headers=api.admin)
    assert r.status_code == 400


async def test_lifecycle_close_reopen_delete_and_their_refusals(api: Api) -> None:
    assert (await api.client.post("/api/v1/billing-projects/default/close")).status_code == 403  # admin only
    batch_id = await api.submit([job(1, command="sleep 100")])  # committed, never run: still running
    closed = await api.client.post("/api/v1/billing-projects/default/close", headers=api.admin)
    assert closed.json()["status"] == "closed"
    spec = {"billing_project": "default", "token": "after-close", "n_jobs": 1}
    r = await api.client.post("/api/v1/batches/create-fast", json={"batch": spec, "bunch": [job(1)]})
    assert r.status_code == 403 and "'default' is closed" in r.json()["message"]
    r = await api.client.post(f"/api/v1/batches/{batch_id}/updates/create", json={"token": "u", "n_jobs": 1})
    assert r.status_code == 403 and r.json()["field"] == "batch_id"
    r = await api.client.delete("/api/v1/billing-projects/default", headers=api.admin)
    assert r.status_code == 409 and f"({batch_id})" in r.json()["message"]  # its batch still runs
    async with api.engine.begin() as conn:  # the batch finishes
        await conn.execute(update(batches).where(batches.c.id == batch_id).values(time_completed=1.0))
    reopened = await api.client.post("/api/v1/billing-projects/default/reopen", headers=api.admin)
    assert reopened.json()["status"] == "open"
    r = await api.client.delete("/api/v1/billing-projects/default", headers=api.admin)
    assert r.status_code == 409 and "close it before deleting" in r.json()["message"]
    await api.client.post("/api/v1/billing-projects/default/close", headers=api.admin)
    deleted = await api.client.delete("/api/v1/billing-projects/default", headers=api.admin)
    assert deleted.json()["status"] == "deleted"
    assert (await api.client.get("/api/v1/billing-projects", headers=api.admin)).json() == []
    r = await api.client.post("/api/v1/billing-projects/default/reopen", headers=api.admin)
    assert r.status_code == 409
    r = await api.client.post("/api/v1/billing-projects/nope/close", headers=api.admin)
    assert r.status_code == 404


async def test_limit_edit_remove_and_submissions_over_it_are_403(api: Api) -> None:
    await _spend(api, "default", "alice", "2026-03-01", 3)
    for bad in (-1, "lots", "inf"):
        body = {"limit": bad}
        r = await api.client.put("/api/v1/billing-projects/default/limit", json=body, headers=api.admin)
        assert r.status_code == 400 and r.json()["field"] == "limit", r.text
    r = await api.client.put("/api/v1/billing-projects/default/limit", json={"limit": 3}, headers=api.admin)
    assert r.json()["limit"] == 3.0
    spec = {"billing_project": "default", "token": "over", "n_jobs": 1}
    r = await api.client.post("/api/v1/batches/create-fast", json={"batch": spec, "bunch": [job(1)]})
    assert r.status_code == 403
    message = r.json()["message"]
    assert "'default'" in message and "3 USD spent" in message and "3 USD limit" in message
    r = await api.client.put("/api/v1/billing-projects/default/limit", json={"limit": 10}, headers=api.admin)
    assert (await api.submit([job(1)])) > 0
    r = await api.client.delete("/api/v1/billing-projects/default/limit", headers=api.admin)
    assert r.json()["limit"] is None
    r = await api.client.post("/api/v1/billing-projects", json={"name": "neg", "spend_limit": -2},
                              headers=api.admin)
    assert r.status_code == 400
