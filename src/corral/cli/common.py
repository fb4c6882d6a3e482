"""What every CLI command shares: the target server, error reporting and exit codes, JSON and tables.

Imports stay light (typer and the standard library): `corral --help` must answer fast, so rich,
httpx and pydantic are imported by the commands that use them.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import TYPE_CHECKING, Any

import typer
from typer.core import TyperGroup

from corral.errors import ConfigError, CorralError

if TYPE_CHECKING:
    from rich.console import Console

    from corral.client.reader import ReadClient
    from corral.client.sync import SyncClient

CLI_RETRIES = 3  # a person waits ~2 s for a server that is down, not a minute


class ExitCode(IntEnum):
    """What `corral`'s exit status means (documented in `corral --help`)."""

    OK = 0
    FAILED = 1  # a batch did not succeed, or the server refused the request
    USAGE = 2  # a bad command line (click's own code)
    CONFIG = 3  # the configuration file, variables or options are wrong
    UNREACHABLE = 4  # no server answers
    TIMEOUT = 5  # a wait gave up; the batch keeps running
    PIPELINE = 6  # the user's pipeline script raised an error
    INTERNAL = 70  # a bug in Corral (EX_SOFTWARE)
    INTERRUPTED = 130  # Ctrl-C
    BROKEN_PIPE = 141  # what read the output stopped reading (128 + SIGPIPE, as a shell reports it)


EXIT_CODES_HELP = (
    "Exit codes: 0 ok · 1 a batch failed or the server refused · 2 bad command line · "
    "3 bad configuration · 4 no server answers · 5 a wait timed out · 6 your pipeline raised an error · "
    "70 a Corral bug · 130 Ctrl-C."
)

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
    "Ready": "blue",
    "Pending": "dim",
    "open": "dim",
}

_consoles: dict[bool, Console] = {}


def _console(stderr: bool) -> Console:
    if stderr not in _consoles:
        from rich.console import Console

        class CorralConsole(Console):
            def on_broken_pipe(self) -> None:  # rich exits 1; say what happened as typer.echo's path does
                self.quiet = True
                _quiet_stdout()
                raise SystemExit(ExitCode.BROKEN_PIPE)

        _consoles[stderr] = CorralConsole(stderr=stderr)
    return _consoles[stderr]


def _quiet_stdout() -> None:
    """The reader of stdout went away: send what is left to /dev/null (Python would complain at exit)."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


class _LazyConsole:
    """rich's Console, created on first use (importing rich costs ~50 ms)."""

    def __init__(self, stderr: bool) -> None:
        self._stderr = stderr

    def __getattr__(self, name: str) -> Any:
        return getattr(_console(self._stderr), name)


console: Console = _LazyConsole(False)  # type: ignore[assignment]
err_console: Console = _LazyConsole(True)  # type: ignore[assignment]


def escape(text: str) -> str:
    from rich.markup import escape as rich_escape

    return rich_escape(text)


def exit_code_for(exc: CorralError) -> ExitCode:
    from corral.client.errors import BatchFailed, ServerUnreachable, WaitTimeout

    if isinstance(exc, ConfigError):
        return ExitCode.CONFIG
    if isinstance(exc, ServerUnreachable):
        return ExitCode.UNREACHABLE
    if isinstance(exc, WaitTimeout):
        return ExitCode.TIMEOUT
    if isinstance(exc, BatchFailed):
        return ExitCode.FAILED
    return ExitCode.FAILED


def error_line(message: str) -> None:
    err_console.print(f"[red]error:[/] {escape(message)}", soft_wrap=True)


def report(exc: CorralError, ctx: Any = None) -> ExitCode:
    """One clear line (or the summary a BatchFailed carries) on stderr; returns the exit code."""
    from corral.client.errors import ServerUnreachable

    field = f" (field: {exc.field})" if exc.field and exc.field not in exc.message else ""
    message = exc.message + field
    if isinstance(exc, ServerUnreachable) and ctx is not None:
        hint = target(ctx).unreachable_hint
        if hint and hint not in message:
            message += f"; {hint}"
    error_line(message)
    return exit_code_for(exc)


class CorralGroup(TyperGroup):
    """Turns every error raised below into one red line on stderr and a documented exit code:
    no traceback reaches a user (CORRAL_DEBUG=1 shows them for bugs)."""

    def invoke(self, ctx: Any) -> Any:  # typer's vendored click.Context
        try:
            return super().invoke(ctx)
        except (typer.Exit, typer.Abort, typer.TyperException):
            raise
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]")
            raise typer.Exit(code=ExitCode.INTERRUPTED) from None
        except BrokenPipeError:
            # The reader went away (`corral batch jobs 1 --all | head`): stop quietly, as `cat` would.
            _quiet_stdout()
            raise typer.Exit(code=ExitCode.BROKEN_PIPE) from None
        except CorralError as exc:
            raise typer.Exit(code=report(exc, ctx)) from None
        except Exception as exc:
            if os.environ.get("CORRAL_DEBUG"):
                raise
            error_line(
                f"internal error: {type(exc).__name__}: {exc}. This is a bug in Corral; "
                "run again with CORRAL_DEBUG=1 to see where it happened, and report it."
            )
            raise typer.Exit(code=ExitCode.INTERNAL) from None


@dataclass
class Target:
    """The global --url / --token options, and what to tell the user when the server does not answer."""

    url: str | None = None
    token: str | None = None
    unreachable_hint: str | None = None


def target(ctx: typer.Context) -> Target:
    root = ctx.find_root()
    return root.obj if isinstance(root.obj, Target) else Target()


def connect(ctx: typer.Context, *, admin: bool = False) -> SyncClient:
    """A client for the server the global options (or the environment, or $CORRAL_HOME) name."""
    from corral.client.discovery import locate_server, resolve_token
    from corral.client.sync import SyncClient

    t = target(ctx)
    found = locate_server(t.url)
    t.unreachable_hint = found.hint
    return SyncClient(found.url, resolve_token(t.token, admin=admin), retries=CLI_RETRIES)


def read_client(ctx: typer.Context, *, admin: bool = False) -> ReadClient:
    """A light, blocking, GET-only client for read commands (no pydantic, no event loop: they answer
    fast), for the same server and token as `connect`."""
    from corral.client.discovery import locate_server, resolve_token
    from corral.client.reader import ReadClient

    t = target(ctx)
    found = locate_server(t.url)
    t.unreachable_hint = found.hint
    return ReadClient(found.url, resolve_token(t.token, admin=admin), retries=CLI_RETRIES)


def print_json(data: Any) -> None:
    typer.echo(json.dumps(data, indent=2, default=str))


def styled(state: str) -> str:
    style = STATE_STYLES.get(state)
    return f"[{style}]{state}[/]" if style else state


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.table import Table

    out = Table(title=title, title_justify="left")
    for column in columns:
        out.add_column(column)
    for row in rows:
        out.add_row(*("" if v is None else str(v) for v in row))
    console.print(out)


def seconds(msec: int | None) -> str:
    return "" if msec is None else f"{msec / 1000:.1f}s"


def money(cost: float | None) -> str:
    return "" if cost is None else f"${cost:.4f}"


__all__ = [
    "EXIT_CODES_HELP", "ConfigError", "CorralGroup", "ExitCode", "Target", "connect", "console",
    "err_console", "error_line", "escape", "exit_code_for", "money", "print_json", "read_client", "report",
    "seconds",
    "styled", "table", "target",
]
