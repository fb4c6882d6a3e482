"""Authentication and isolation: tokens, admins, billing-project membership."""

from __future__ import annotations

from test_api_support import Api, api_fixture, job, row_counts  # noqa: F401


async def test_healthcheck_version_and_openapi_need_no_token(api: Api) -> None:
    client = api.client
    assert (await client.get("/healthcheck", headers={"Authorization": ""})).json() == {"status": "ok"}
    assert "version" in (await client.get("/api/v1/version")).json()
    paths = (await client.get("/openapi.json")).json()["paths"]
    assert "/api/v1/batches/create-fast" in paths and "/api/v1/batches/{batch_id}/jobs" in paths


async def test_missing_or_unknown_token_is_401(api: Api) -> None:
    batch_id = await api.submit([job(1)])
    r = await api.client.get(f"/api/v1/batches/{batch_id}", headers={"Authorization": ""})
    assert r.status_code == 401 and r.json()["field"] == "authorization"
    r = await api.client.get(f"/api/v1/batches/{batch_id}", headers=api.auth("not-a-token"))
    assert r.status_code == 401
    assert r.json()["error"] == "Unauthenticated"


async def test_other_users_batch_is_404_until_they_share_its_billing_project(api: Api) -> None:
    batch_id = await api.submit([job(1)])
    carol = await api.new_user("carol")
    for path in (
        f"/api/v1/batches/{batch_id}",
        f"/api/v1/batches/{batch_id}/jobs",
        f"/api/v1/batches/{batch_id}/jobs/1",
    ):
        assert (await api.client.get(path, headers=carol)).status_code == 404, path
    assert (await api.client.patch(f"/api/v1/batches/{batch_id}/cancel", headers=carol)).status_code == 404
    assert (await api.client.delete(f"/api/v1/batches/{batch_id}", headers=carol)).status_code == 404
    listed = (await api.client.get("/api/v1/batches", headers=carol)).json()["batches"]
    assert listed == []
    assert api.hooks.cancelled == []
    r = await api.client.post("/api/v1/billing-projects/default/users/carol", headers=api.admin)
    assert r.status_code == 200
    assert (await api.client.get(f"/api/v1/batches/{batch_id}", headers=carol)).status_code == 200


async def test_batch_in_foreign_billing_project_is_403_and_unknown_is_400(api: Api) -> None:
    carol = await api.new_user("carol")
    r = await api.client.post("/api/v1/billing-projects", json={"name": "secret"}, headers=api.admin)
    assert r.status_code == 200
    before = await row_counts(api.engine)
    spec = {"billing_project": "secret", "token": "x", "n_jobs": 1}
    r = await api.client.post(
        "/api/v1/batches/create-fast", json={"batch": spec, "bunch": [job(1)]}, headers=carol
    )
    assert r.status_code == 403
    assert r.json()["field"] == "batch.billing_project" and "not a member" in r.json()["message"]
    spec["billing_project"] = "nope"
    r = await api.client.post("/api/v1/batches/create", json=spec, headers=carol)
    assert r.status_code == 400
    assert r.json()["field"] == "batch.billing_project" and "nope" in r.json()["message"]
    assert await row_counts(api.engine) == before


async def test_admin_only_routes_are_403_for_users(api: Api) -> None:
    assert (await api.client.post("/api/v1/users", json={"name": "mallory"})).status_code == 403
    assert (await api.client.post("/api/v1/billing-projects", json={"name": "mine"})).status_code == 403
    r = await api.client.post("/api/v1/billing-projects/default/users/alice")
    assert r.status_code == 403 and r.json()["error"] == "Forbidden"


async def test_admin_creates_users_and_projects_and_members_are_listed(api: Api) -> None:
    r = await api.client.post("/api/v1/users", json={"name": "bob"}, headers=api.admin)
    assert r.status_code == 200 and r.json()["token"]
    bob = api.auth(r.json()["token"])
    assert (
        await api.client.post("/api/v1/users", json={"name": "bob"}, headers=api.admin)
    ).status_code == 409
    assert (
        await api.client.post("/api/v1/billing-projects", json={"name": "lab"}, headers=api.admin)
    ).is_success
    assert (await api.client.post("/api/v1/billing-projects/lab/users/bob", headers=api.admin)).is_success
    assert (await api.client.post("/api/v1/billing-projects/lab/users/bob", headers=api.admin)).is_success
    r = await api.client.post("/api/v1/billing-projects/lab/users/nobody", headers=api.admin)
    assert r.status_code == 404 and r.json()["field"] == "user"
    me = (await api.client.get("/api/v1/me", headers=bob)).json()
    assert me == {"name": "bob", "is_admin": False, "billing_projects": ["lab"]}
    mine = (await api.client.get("/api/v1/billing-projects", headers=bob)).json()
    assert [(p["billing_project"], p["users"], p["accrued_cost"]) for p in mine] == [("lab", ["bob"], 0.0)]
    every = (await api.client.get("/api/v1/billing-projects", headers=api.admin)).json()
    assert {p["billing_project"] for p in every} == {"default", "lab"}
    assert (await api.client.delete("/api/v1/billing-projects/lab/users/bob", headers=api.admin)).is_success
    assert (await api.client.get("/api/v1/me", headers=bob)).json()["billing_projects"] == []
