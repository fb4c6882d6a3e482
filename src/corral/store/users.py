"""Named queries for users, their tokens and billing projects."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.errors import Conflict
from corral.store.ledger import project_spend
from corral.store.tables import billing_project_users, billing_projects, users


@dataclass(frozen=True, slots=True)
class User:
    name: str
    is_admin: bool


@dataclass(frozen=True, slots=True)
class BillingProject:
    name: str
    status: str
    spend_limit: float | None


@dataclass(frozen=True, slots=True)
class BillingProjectSummary:
    name: str
    status: str
    spend_limit: float | None
    users: list[str]
    accrued_cost: float


# ---------------------------------------------------------------- users


async def user_by_token_hash(conn: AsyncConnection, token_hash: str) -> User | None:
    row = (
        await conn.execute(select(users.c.name, users.c.is_admin).where(users.c.token_hash == token_hash))
    ).first()
    return User(row.name, bool(row.is_admin)) if row else None


async def user_by_name(conn: AsyncConnection, name: str) -> User | None:
    row = (await conn.execute(select(users.c.name, users.c.is_admin).where(users.c.name == name))).first()
    return User(row.name, bool(row.is_admin)) if row else None


async def user_token_hash(conn: AsyncConnection, name: str) -> str | None:
    row = (await conn.execute(select(users.c.token_hash).where(users.c.name == name))).first()
    return str(row.token_hash) if row else None


async def create_user(
    conn: AsyncConnection, name: str, token_hash: str, *, is_admin: bool, now: float
) -> User:
    if await user_by_name(conn, name) is not None:
        raise Conflict(f"name: user {name!r} already exists; choose another name", field="name")
    try:
        await conn.execute(
            users.insert().values(name=name, token_hash=token_hash, is_admin=is_admin, time_created=now)
        )
    except IntegrityError:
        raise Conflict(f"name: user {name!r} already exists; choose another name", field="name") from None
    return User(name, is_admin)


async def set_user_token_hash(conn: AsyncConnection, name: str, token_hash: str) -> None:
    await conn.execute(update(users).where(users.c.name == name).values(token_hash=token_hash))


async def set_user_admin(conn: AsyncConnection, name: str, is_admin: bool) -> None:
    await conn.execute(update(users).where(users.c.name == name).values(is_admin=is_admin))


# ---------------------------------------------------------------- billing projects


async def billing_project(conn: AsyncConnection, name: str) -> BillingProject | None:
    row = (
        await conn.execute(
            select(billing_projects.c.name, billing_projects.c.status, billing_projects.c.spend_limit).where(
                billing_projects.c.name == name
            )
        )
    ).first()
    return BillingProject(row.name, row.status, row.spend_limit) if row else None


async def create_billing_project(
    conn: AsyncConnection, name: str, *, spend_limit: float | None, now: float
) -> BillingProject:
    message = f"name: billing project {name!r} already exists; choose another name"
    if await billing_project(conn, name) is not None:
        raise Conflict(message, field="name")
    try:
        await conn.execute(
            billing_projects.insert().values(
                name=name, status="open", spend_limit=spend_limit, time_created=now
            )
        )
    except IntegrityError:
        raise Conflict(message, field="name") from None
    return BillingProject(name, "open", spend_limit)


async def is_billing_project_member(conn: AsyncConnection, billing_project_name: str, user: str) -> bool:
    row = (
        await conn.execute(
            select(billing_project_users.c.user).where(
                billing_project_users.c.billing_project == billing_project_name,
                billing_project_users.c.user == user,
            )
        )
    ).first()
    return row is not None


async def add_billing_project_user(conn: AsyncConnection, billing_project_name: str, user: str) -> bool:
    """Idempotent; True if the user was not a member before."""
    if await is_billing_project_member(conn, billing_project_name, user):
        return False
    await conn.execute(billing_project_users.insert().values(billing_project=billing_project_name, user=user))
    return True


async def remove_billing_project_user(conn: AsyncConnection, billing_project_name: str, user: str) -> bool:
    result = await conn.execute(
        delete(billing_project_users).where(
            billing_project_users.c.billing_project == billing_project_name,
            billing_project_users.c.user == user,
        )
    )
    return bool(result.rowcount)


async def list_billing_projects(
    conn: AsyncConnection, member: str | None = None, *, name: str | None = None,
    include_deleted: bool = False,
) -> list[BillingProjectSummary]:
    """All billing projects (member=None) or those `member` belongs to, with members and accrued cost
    (from the billing ledger); deleted ones only when asked."""
    query = select(billing_projects).order_by(billing_projects.c.name)
    if name is not None:
        query = query.where(billing_projects.c.name == name)
    if not include_deleted:
        query = query.where(billing_projects.c.status != "deleted")
    if member is not None:
        query = query.where(
            billing_projects.c.name.in_(
                select(billing_project_users.c.billing_project).where(billing_project_users.c.user == member)
            )
        )
    projects = list(await conn.execute(query))
    names = [p.name for p in projects]
    if not names:
        return []
    members: dict[str, list[str]] = defaultdict(list)
    for row in await conn.execute(
        select(billing_project_users.c.billing_project, billing_project_users.c.user)
        .where(billing_project_users.c.billing_project.in_(names))
        .order_by(billing_project_users.c.user)
    ):
        members[row.billing_project].append(row.user)
    costs = {p: float(cost) for p, cost in (await project_spend(conn, names)).items()}
    return [
        BillingProjectSummary(p.name, p.status, p.spend_limit, members[p.name], costs.get(p.name, 0.0))
        for p in projects
    ]
