"""What every CLI command shares: the target server, error reporting, JSON and table output."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from corral.client.discovery import resolve_token, resolve_url
from corral.client.sync import SyncClient
from corral.errors import CorralError

console = Console()
err_console = Console(stderr=True)
CLI_RETRIES = 3  # a person waits ~2 s for a server that is down, not a minute

STATE_STYLES = {
    "Success": "green",
    "success": "green",
    "Failed": "red",
    "failure": "red",
    "Error": "red",
    "Cancelled": "yellow",
    "cancelled": "yellow",
    "Running": "cyan",
    "running": "cyan",
    "Creating": "cyan",
    "Ready": "blue",
    "Pending": "dim",
    "open": "dim",
}


class CorralGroup(TyperGroup):
    """Turns Corral errors raised anywhere below into one red line and exit code 1."""

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click.Context
        try:
            return super().invoke(ctx)
        except CorralError as exc:
            field = f" (field: {exc.field})" if exc.field and exc.field not in exc.message else ""
            err_console.print(f"[red]error:[/] {escape(exc.message)}{escape(field)}")
            raise typer.Exit(code=1) from None


@dataclass
class Target:
    """The global --url / --token options."""

    url: str | None = None
    token: str | None = None


def target(ctx: typer.Context) -> Target:
    root = ctx.find_root()
    return root.obj if isinstance(root.obj, Target) else Target()


def connect(ctx: typer.Context, *, admin: bool = False) -> SyncClient:
    """A client for the server the global options (or the environment, or $CORRAL_HOME) name."""
    t = target(ctx)
    return SyncClient(resolve_url(t.url), resolve_token(t.token, admin=admin), retries=CLI_RETRIES)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def styled(state: str) -> str:
    style = STATE_STYLES.get(state)
    return f"[{style}]{state}[/]" if style else state


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    out = Table(title=title, title_justify="left")
    for column in columns:
        out.add_column(column)
    for row in rows:
        out.add_row(*("" if v is None else str(v) for v in row))
    console.print(out)


def seconds(msec: int | None) -> str:
    return "" if msec is None else f"{msec / 1000:.1f}s"
