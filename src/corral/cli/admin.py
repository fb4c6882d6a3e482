"""`corral user …` (admin operations; the admin token is used by default)."""

from __future__ import annotations

from typing import Annotated

import typer

from corral.cli.common import CorralGroup, connect, console, print_json

user_app = typer.Typer(cls=CorralGroup, no_args_is_help=True, help="Manage users (admin).")

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
