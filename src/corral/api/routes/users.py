"""User routes: create users (admin), who am I."""

from __future__ import annotations

import time
from typing import Any

from fastapi import APIRouter

from corral.api.auth import AdminUser, CurrentUser
from corral.api.context import Context
from corral.api.schemas import UserCreate, UserCreated
from corral.domain.tokens import hash_token, new_token
from corral.store import users as user_store

router = APIRouter(prefix="/api/v1", tags=["users"])


@router.post("/users")
async def create_user(body: UserCreate, ctx: Context, _admin: AdminUser) -> UserCreated:
    """The token is shown once, here; only its hash is stored."""
    token = new_token()
    async with ctx.writing() as conn:
        user = await user_store.create_user(
            conn, body.name, hash_token(token), is_admin=body.is_admin, now=time.time()
        )
    return UserCreated(name=user.name, is_admin=user.is_admin, token=token)


@router.get("/me")
async def me(ctx: Context, user: CurrentUser) -> dict[str, Any]:
    async with ctx.reading() as conn:
        projects = await user_store.list_billing_projects(conn, member=user.name)
    return {"name": user.name, "is_admin": user.is_admin, "billing_projects": [p.name for p in projects]}
