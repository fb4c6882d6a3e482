"""The billing page's queries: spend by billing project, user and day over a date range, from the billing
ledger's daily roll-up (`daily_usage`, the table the API's `/api/v1/billing/report` reads), priced with
the same rate versions and the same domain functions, so the page shows what the API returns."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from corral.domain.billing.ledger import CostLine, breakdown, total
from corral.domain.billing.reports import ReportBy, UsageEntry, report
from corral.store import ledger
from corral.store.tables import billing_project_users, billing_projects, daily_usage
from corral.store.users import list_billing_projects


@dataclass(frozen=True, slots=True)
class SpendRow:
    billing_project: str
    user: str
    day: str  # YYYY-MM-DD (UTC)
    cost: float
    lines: list[CostLine]  # by versioned resource


@dataclass(frozen=True, slots=True)
class Spend:
    rows: list[SpendRow]  # by (day, billing_project, user)
    by_project: dict[str, float]
    by_user: dict[str, float]
    by_day: dict[str, float]
    total: float


def _grouped(entries: list[UsageEntry], by: ReportBy, rates: dict[str, Decimal]) -> dict[str, float]:
    return {line.key: float(line.cost) for line in report(entries, by, rates)}


async def visible_projects(conn: AsyncConnection, viewer: str | None) -> list[str] | None:
    """The projects whose spend `viewer` may read, as the API decides it: None (all) for admins, else
    the projects they are members of, deleted ones included."""
    if viewer is None:
        return None
    return [p.name for p in await list_billing_projects(conn, member=viewer, include_deleted=True)]


async def spend(
    conn: AsyncConnection, *, since: str, until: str, projects: Sequence[str] | None
) -> Spend:
    """Spend over the days since..until (inclusive, UTC) of `projects` (None: all)."""
    rows = await ledger.daily_rows(conn, projects=projects, since=since, until=until)
    rates = dict(await ledger.rate_map(conn, {r.resource for r in rows}))
    entries = [UsageEntry(r.billing_project, r.user, r.day, r.resource, r.usage) for r in rows]
    cells: dict[tuple[str, str, str], list[tuple[str, int]]] = defaultdict(list)
    for e in entries:
        cells[(e.day, e.billing_project, e.user)].append((e.resource, e.usage))
    spend_rows = []
    for (day, project, user), usage in sorted(cells.items()):
        lines = breakdown(usage, rates)
        spend_rows.append(SpendRow(project, user, day, float(total(lines)), lines))
    grand = total(line for r in report(entries, "project", rates) for line in r.lines)
    return Spend(
        spend_rows,
        _grouped(entries, "project", rates),
        _grouped(entries, "user", rates),
        _grouped(entries, "day", rates),
        float(grand),
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
    """One project's limit and all-time spend (the ledger's, as the API's `accrued_cost`)."""
    row = (
        await conn.execute(
            select(billing_projects.c.name, billing_projects.c.status, billing_projects.c.spend_limit).where(
                billing_projects.c.name == name
            )
        )
    ).first()
    if row is None:
        return None
    # the ledger's project_spend, with the per-resource sums done in SQL (a few rows, not one per day x
    # user x resource: the batch page and its live summary read this)
    usage = [
        (str(r.resource), int(r.usage))
        for r in await conn.execute(
            select(daily_usage.c.resource, func.sum(daily_usage.c.usage).label("usage"))
            .where(daily_usage.c.billing_project == name)
            .group_by(daily_usage.c.resource)
        )
    ]
    rates = await ledger.rate_map(conn, {resource for resource, _ in usage})
    cost = total(breakdown(usage, rates))
    return ProjectSpend(str(row.name), str(row.status), row.spend_limit, float(cost))


async def projects_spend(conn: AsyncConnection, *, member: str | None) -> list[ProjectSpend]:
    """Every billing project (member=None) or the member's, with limit and accrued cost: the API's
    billing-projects list (deleted projects leave it)."""
    return [
        ProjectSpend(p.name, p.status, p.spend_limit, p.accrued_cost)
        for p in await list_billing_projects(conn, member=member)
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
