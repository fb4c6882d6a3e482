"""The `corral` command: thin Typer commands over corral.client and the server/worker entry points."""

from __future__ import annotations

import importlib
from typing import Annotated, Any

import typer
import typer.main

from corral import __version__
from corral.cli import pipelines, serve
from corral.cli.common import EXIT_CODES_HELP, CorralGroup, Target

# The command groups, loaded only when named: building every group's commands (typer inspects each
# function's signature) and importing their modules would cost every command ~50 ms it does not use.
COMMAND_GROUPS = {
    "batch": ("corral.cli.batches", "batch_app"),
    "job": ("corral.cli.jobs", "job_app"),
    "pool": ("corral.cli.system", "pool_app"),
    "instance": ("corral.cli.system", "instance_app"),
    "user": ("corral.cli.admin", "user_app"),
    "billing-project": ("corral.cli.billing", "project_app"),
    "billing": ("corral.cli.billing", "billing_app"),
    "bench": ("corral.cli.bench", "bench_app"),
    "sweep": ("corral.cli.sweeps", "sweep_app"),
    "admin": ("corral.cli.admin", "admin_app"),
}


class RootGroup(CorralGroup):
    """`corral`: the commands registered below, plus the groups of COMMAND_GROUPS built on first use."""

    def list_commands(self, ctx: Any) -> list[str]:
        return [*super().list_commands(ctx), *(n for n in COMMAND_GROUPS if n not in self.commands)]

    def get_command(self, ctx: Any, cmd_name: str) -> Any:
        command = super().get_command(ctx, cmd_name)
        if command is None and cmd_name in COMMAND_GROUPS:
            module, attribute = COMMAND_GROUPS[cmd_name]
            command = typer.main.get_group(getattr(importlib.import_module(module), attribute))
            command.name = cmd_name
            self.add_command(command, cmd_name)
        return command


app = typer.Typer(
    cls=RootGroup,
    name="corral",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Corral: durable batches, fair scheduling, isolated jobs on any compute.",
    epilog=EXIT_CODES_HELP,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"corral {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    url: Annotated[
        str | None,
        typer.Option(envvar="CORRAL_URL", help="Server URL; default: the local server of $CORRAL_HOME"),
    ] = None,
    token: Annotated[
        str | None,
        typer.Option(envvar="CORRAL_TOKEN", help="API token; default: $CORRAL_HOME/tokens.json"),
    ] = None,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version")
    ] = False,
) -> None:
    ctx.obj = Target(url=url, token=token)


app.command("server")(serve.server)
app.command("worker")(serve.worker)
app.command("run", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})(pipelines.run)
app.command("demo")(pipelines.demo)

if __name__ == "__main__":  # pragma: no cover
    app()
