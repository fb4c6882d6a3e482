"""Bearer-token authentication of users and the admin check."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Header

from corral.api.context import Context
from corral.domain.tokens import hash_token
from corral.errors import Forbidden, Unauthenticated
from corral.store import users as user_store
from corral.store.users import User


async def current_user(ctx: Context, authorization: Annotated[str | None, Header()] = None) -> User:
    if not authorization or not authorization.lower().startswith("bearer "):
        raise Unauthenticated(
            "authorization: send your token as 'Authorization: Bearer <token>' (see tokens.json)",
            field="authorization",
        )
    token_hash = hash_token(authorization.split(" ", 1)[1].strip())
    user = ctx.tokens.get(token_hash)
    if user is None:
        async with ctx.reading(small=True) as conn:
            user = await user_store.user_by_token_hash(conn, token_hash)
        if user is None:
            raise Unauthenticated(
                "authorization: unknown token; ask an admin for a valid one", field="authorization"
            )
        ctx.tokens.put(token_hash, user)
    return user


async def admin_user(user: Annotated[User, Depends(current_user)]) -> User:
    if not user.is_admin:
        raise Forbidden(f"user {user.name!r} is not an admin; this route is for admins only")
    return user


CurrentUser = Annotated[User, Depends(current_user)]
AdminUser = Annotated[User, Depends(admin_user)]
