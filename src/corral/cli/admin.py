"""`corral user …` (admin operations; the admin token is used by default)."""

from __future__ import annotations

from typing import Annotated

import typer

from corral.cli.common import CorralGroup, connect, console, print_json, read_client, table

user_app = typer.Typer(cls=CorralGroup, no_args_is_help=True, help="Manage users (admin).")
admin_app = typer.Typer(cls=CorralGroup, no_args_is_help=True, help="Look after the server (admin).")

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
    with read_client(ctx, admin=True) as client:
        found = client.list_users()
    if as_json:
        print_json(found)
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


@admin_app.command("check")
def check(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Check the server's invariants: batch counters vs job states, running attempts vs instances,
    parents before children, the driver's running cores vs its assignments. Exit 1 if any fails."""
    with connect(ctx, admin=True) as client:
        report = client.check_invariants()
    if as_json:
        print_json(report)
    elif report["ok"]:
        console.print(f"all invariants hold ({', '.join(report['checked'])})")
    else:
        table(None, ["check", "violation"], [[v["check"], v["detail"]] for v in report["violations"]])
    if not report["ok"]:
        raise typer.Exit(1)
