"""The billing page's queries: spend by billing project, user and day over a date range.

Reads what the store has today (each batch's rolled-up cost, dated by the batch's creation); when the
billing ledger lands, only this module changes.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.store.tables import batches, billing_project_users, billing_projects


@dataclass(frozen=True, slots=True)
class SpendRow:
    billing_project: str
    user: str
    day: str  # YYYY-MM-DD (UTC)
    cost: float
    n_batches: int


@dataclass(frozen=True, slots=True)
class Spend:
    rows: list[SpendRow]  # by (day, billing_project, user)
    by_project: dict[str, float]
    by_user: dict[str, float]
    by_day: dict[str, float]
    total: float


def day_of(t: float) -> str:
    return datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%d")


async def spend(conn: AsyncConnection, *, start: float, end: float, viewer: str | None) -> Spend:
    """Spend of batches created in [start, end); viewer=None: all (admins), else the viewer's projects'."""
    query = select(batches.c.billing_project, batches.c.user, batches.c.time_created, batches.c.cost).where(
        batches.c.time_created >= start, batches.c.time_created < end
    )
    if viewer is not None:
        member_of = select(billing_project_users.c.billing_project).where(
            billing_project_users.c.user == viewer
        )
        query = query.where((batches.c.user == viewer) | batches.c.billing_project.in_(member_of))
    cells: dict[tuple[str, str, str], list[float]] = defaultdict(lambda: [0.0, 0])
    for row in await conn.execute(query):
        cell = cells[(day_of(float(row.time_created)), str(row.billing_project), str(row.user))]
        cell[0] += float(row.cost or 0.0)
        cell[1] += 1
    rows = [
        SpendRow(project, user, day, cost, int(n))
        for (day, project, user), (cost, n) in sorted(cells.items())
    ]
    by_project: dict[str, float] = defaultdict(float)
    by_user: dict[str, float] = defaultdict(float)
    by_day: dict[str, float] = defaultdict(float)
    for r in rows:
        by_project[r.billing_project] += r.cost
        by_user[r.user] += r.cost
        by_day[r.day] += r.cost
    return Spend(
        rows,
        dict(sorted(by_project.items())),
        dict(sorted(by_user.items())),
        dict(sorted(by_day.items())),
        sum(r.cost for r in rows),
    )


@dataclass(frozen=True, slots=True)
class ProjectSpend:
    name: str
    status: str
    spend_limit: float | None
    accrued_cost: float

    @property
    def fraction(self) -> float | None:
        """Spend over limit (None without a limit)."""
        if self.spend_limit is None:
            return None
        return self.accrued_cost / self.spend_limit if self.spend_limit > 0 else 1.0


async def project_spend(conn: AsyncConnection, name: str) -> ProjectSpend | None:
    row = (
        await conn.execute(
            select(billing_projects.c.name, billing_projects.c.status, billing_projects.c.spend_limit).where(
                billing_projects.c.name == name
            )
        )
    ).first()
    if row is None:
        return None
    cost = (
        await conn.execute(
            select(func.coalesce(func.sum(batches.c.cost), 0.0)).where(batches.c.billing_project == name)
        )
    ).scalar_one()
    return ProjectSpend(str(row.name), str(row.status), row.spend_limit, float(cost or 0.0))


async def projects_spend(conn: AsyncConnection, *, member: str | None) -> list[ProjectSpend]:
    """Every billing project (member=None) or the member's, with limit and accrued cost (one query)."""
    cost = (
        select(batches.c.billing_project, func.sum(batches.c.cost).label("cost"))
        .group_by(batches.c.billing_project)
        .subquery()
    )
    query = (
        select(
            billing_projects.c.name, billing_projects.c.status, billing_projects.c.spend_limit, cost.c.cost
        )
        .outerjoin(cost, cost.c.billing_project == billing_projects.c.name)
        .order_by(billing_projects.c.name)
    )
    if member is not None:
        query = query.where(
            billing_projects.c.name.in_(
                select(billing_project_users.c.billing_project).where(billing_project_users.c.user == member)
            )
        )
    return [
        ProjectSpend(str(r.name), str(r.status), r.spend_limit, float(r.cost or 0.0))
        for r in await conn.execute(query)
    ]


async def members(conn: AsyncConnection) -> dict[str, list[str]]:
    found: dict[str, list[str]] = defaultdict(list)
    for row in await conn.execute(
        select(billing_project_users.c.billing_project, billing_project_users.c.user).order_by(
            billing_project_users.c.billing_project, billing_project_users.c.user
        )
    ):
        found[str(row.billing_project)].append(str(row.user))
    return dict(found)
