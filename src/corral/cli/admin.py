"""`corral user …` and `corral billing-project …` (admin operations; the admin token is used by default)."""

from __future__ import annotations

from typing import Annotated

import typer

from corral.cli.common import CorralGroup, connect, console, print_json, table

user_app = typer.Typer(cls=CorralGroup, no_args_is_help=True, help="Manage users (admin).")
project_app = typer.Typer(cls=CorralGroup, no_args_is_help=True, help="Manage billing projects (admin).")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")]


@user_app.command("create")
def create_user(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="User name")],
    admin: Annotated[bool, typer.Option("--admin", help="Make the user an administrator")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Create a user and print its token (shown only once)."""
    with connect(ctx, admin=True) as client:
        created = client.create_user(name, is_admin=admin)
    if as_json:
        print_json(created.model_dump(mode="json"))
        return
    role = "admin" if created.is_admin else "user"
    console.print(f"created {role} [bold]{created.name}[/]; token (shown once): {created.token}")


@user_app.command("list")
def list_users(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Every user (admin)."""
    with connect(ctx, admin=True) as client:
        found = client.list_users()
    if as_json:
        print_json([u.model_dump(mode="json") for u in found])
        return
    table(None, ["user", "admin"], [[u.name, "yes" if u.is_admin else ""] for u in found])


@user_app.command("me")
def whoami(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Who the token belongs to."""
    with connect(ctx) as client:
        me = client.me()
    if as_json:
        print_json(me)
    else:
        console.print(
            f"{me.get('name')} (admin: {me.get('is_admin')}), billing projects: "
            f"{', '.join(me.get('billing_projects') or [])}"
        )


@project_app.command("create")
def create_project(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="Billing project")],
    as_json: JsonFlag = False,
) -> None:
    """Create a billing project."""
    with connect(ctx, admin=True) as client:
        created = client.create_billing_project(name)
    if as_json:
        print_json({"billing_project": name, **created})
        return
    console.print(f"created billing project [bold]{name}[/]")


@project_app.command("add-user")
def add_user(
    ctx: typer.Context,
    billing_project: Annotated[str, typer.Argument(help="Billing project")],
    user: Annotated[str, typer.Argument(help="User to add")],
    as_json: JsonFlag = False,
) -> None:
    """Let USER submit batches to BILLING_PROJECT."""
    with connect(ctx, admin=True) as client:
        client.add_billing_project_user(billing_project, user)
    if as_json:
        print_json({"billing_project": billing_project, "user": user, "added": True})
        return
    console.print(f"added {user} to billing project {billing_project}")


@project_app.command("list")
def list_projects(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Billing projects you can see, with their members and accrued cost."""
    with connect(ctx) as client:
        projects = client.list_billing_projects()
    if as_json:
        print_json([p.model_dump(mode="json") for p in projects])
        return
    rows = [
        [p.billing_project, p.status, ", ".join(p.users), p.limit, f"{p.accrued_cost:.4f}"] for p in projects
    ]
    table(None, ["billing project", "status", "users", "limit", "accrued cost"], rows)
