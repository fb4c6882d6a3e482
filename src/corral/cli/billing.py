"""`corral billing-project …` (lifecycle, members, spend limit) and `corral billing report|rates`."""

from __future__ import annotations

import csv
import sys
from typing import TYPE_CHECKING, Annotated

import typer

from corral.cli.common import CorralGroup, connect, console, print_json, table
from corral.errors import InvalidInput

if TYPE_CHECKING:  # pydantic models: imported only when a command runs (`corral --help` stays fast)
    from corral.api.schemas import BillingProjectStatus, BillingReport

project_app = typer.Typer(
    cls=CorralGroup, no_args_is_help=True,
    help="Billing projects: create, members, close/reopen/delete, spend limit (admin); list and show.",
)
billing_app = typer.Typer(cls=CorralGroup, no_args_is_help=True, help="Spend reports and rates.")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")]
Project = Annotated[str, typer.Argument(help="Billing project")]


def _money(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def _show(p: BillingProjectStatus, as_json: bool) -> None:
    if as_json:
        print_json(p.model_dump(mode="json"))
        return
    limit = "none" if p.limit is None else _money(p.limit)
    console.print(
        f"[bold]{p.billing_project}[/] {p.status}; spent {_money(p.accrued_cost)} of limit {limit}; "
        f"members: {', '.join(p.users) or '-'}"
    )


@project_app.command("create")
def create_project(
    ctx: typer.Context, name: Project,
    limit: Annotated[float | None, typer.Option("--limit", min=0, help="Spend limit")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Create a billing project (optionally with a spend limit)."""
    with connect(ctx, admin=True) as client:
        created = client.create_billing_project(name, limit)
    if as_json:
        print_json({"billing_project": name, **created})
        return
    console.print(f"created billing project [bold]{name}[/]")


@project_app.command("add-user")
def add_user(
    ctx: typer.Context, billing_project: Project,
    user: Annotated[str, typer.Argument(help="User to add")],
    as_json: JsonFlag = False,
) -> None:
    """Let USER submit batches to BILLING_PROJECT."""
    _change_member(ctx, billing_project, user, add=True, as_json=as_json)


@project_app.command("remove-user")
def remove_user(
    ctx: typer.Context, billing_project: Project,
    user: Annotated[str, typer.Argument(help="User to remove")],
    as_json: JsonFlag = False,
) -> None:
    """USER may no longer submit to BILLING_PROJECT (their batches stay theirs)."""
    _change_member(ctx, billing_project, user, add=False, as_json=as_json)


def _change_member(ctx: typer.Context, billing_project: str, user: str, *, add: bool, as_json: bool) -> None:
    with connect(ctx, admin=True) as client:
        if add:
            client.add_billing_project_user(billing_project, user)
        else:
            client.remove_billing_project_user(billing_project, user)
    if as_json:
        print_json({"billing_project": billing_project, "user": user, "added" if add else "removed": True})
        return
    console.print(f"added {user} to" if add else f"removed {user} from", f"billing project {billing_project}")


@project_app.command("list")
def list_projects(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Billing projects you can see, with their members, limit and spend."""
    with connect(ctx) as client:
        projects = client.list_billing_projects()
    if as_json:
        print_json([p.model_dump(mode="json") for p in projects])
        return
    rows = [[p.billing_project, p.status, ", ".join(p.users), _money(p.limit), _money(p.accrued_cost)]
            for p in projects]
    table(None, ["billing project", "status", "users", "limit", "accrued cost"], rows)


@project_app.command("show")
def show_project(ctx: typer.Context, name: Project, as_json: JsonFlag = False) -> None:
    """One billing project: status, spend, limit, members."""
    with connect(ctx) as client:
        _show(client.get_billing_project(name), as_json)


def _action(ctx: typer.Context, name: str, action: str, as_json: bool) -> None:
    with connect(ctx, admin=True) as client:
        _show(client.billing_project_action(name, action), as_json)


@project_app.command("close")
def close(ctx: typer.Context, name: Project, as_json: JsonFlag = False) -> None:
    """No new batches or updates; running batches finish."""
    _action(ctx, name, "close", as_json)


@project_app.command("reopen")
def reopen(ctx: typer.Context, name: Project, as_json: JsonFlag = False) -> None:
    """Accept batches again."""
    _action(ctx, name, "reopen", as_json)


@project_app.command("delete")
def delete(ctx: typer.Context, name: Project, as_json: JsonFlag = False) -> None:
    """Delete a closed project that has no running batches (its spend stays in reports)."""
    _action(ctx, name, "delete", as_json)


@project_app.command("limit")
def limit(
    ctx: typer.Context, name: Project,
    amount: Annotated[float | None, typer.Argument(min=0, help="New spend limit")] = None,
    remove: Annotated[bool, typer.Option("--remove", help="Remove the limit")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Set the spend limit to AMOUNT, or remove it with --remove. Reaching it cancels running batches."""
    if (amount is None) == (not remove):
        raise InvalidInput("limit: give an AMOUNT or --remove (not both)", field="limit")
    with connect(ctx, admin=True) as client:
        _show(client.set_billing_limit(name, None if remove else amount), as_json)


def _write_csv(report: BillingReport) -> None:
    out = csv.writer(sys.stdout)
    out.writerow([report.by, "resource", "usage", "cost", "currency"])
    for row in report.rows:
        for line in row.cost_breakdown:
            out.writerow([row.key, line["resource"], line["usage"], repr(line["cost"]), report.currency])


@billing_app.command("report")
def report(
    ctx: typer.Context,
    by: Annotated[str, typer.Option("--by", help="project | user | day")] = "project",
    since: Annotated[str | None, typer.Option("--since", help="First day, YYYY-MM-DD (UTC)")] = None,
    until: Annotated[str | None, typer.Option("--until", help="Last day (inclusive), YYYY-MM-DD")] = None,
    billing_project: Annotated[str | None, typer.Option("--billing-project", "-p", help="Only it")] = None,
    as_csv: Annotated[bool, typer.Option("--csv", help="CSV: one line per key and resource")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Spend by project, user or day (admins: every project; users: their own projects)."""
    if by not in ("project", "user", "day"):
        raise InvalidInput(f"by: {by!r} is not one of project, user, day", field="by")
    with connect(ctx) as client:
        found = client.billing_report(by, since=since, until=until, billing_project=billing_project)
    if as_json:
        print_json(found.model_dump(mode="json"))
    elif as_csv:
        _write_csv(found)
    else:
        rows = [
            [r.key, _money(r.cost), ", ".join(f"{c['resource']}: {c['cost']:.4f}" for c in r.cost_breakdown)]
            for r in found.rows
        ]
        table(f"spend by {by} ({found.currency})", [by, "cost", "by resource"], rows)
        console.print(f"total: {_money(found.total)} {found.currency}")


@billing_app.command("rates")
def rates(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Every rate version charged so far (currency per unit-hour)."""
    with connect(ctx) as client:
        found = client.billing_rates()
    if as_json:
        print_json(found)
        return
    table(f"rates (accrual every {found['accrual_interval']}s)", ["resource", "rate", "unit"],
          [[r["resource"], r["rate"], r["unit"]] for r in found["rates"]])
