"""The `corral` command: thin Typer commands over corral.client and the server/worker entry points."""

from __future__ import annotations

from typing import Annotated

import typer

from corral import __version__
from corral.cli import admin, batches, billing, pipelines, serve, sweeps
from corral.cli.common import CorralGroup, Target

app = typer.Typer(
    cls=CorralGroup,
    name="corral",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Corral: durable batches, fair scheduling, isolated jobs on any compute.",
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
app.add_typer(batches.batch_app, name="batch")
app.add_typer(batches.job_app, name="job")
app.add_typer(admin.user_app, name="user")
app.add_typer(billing.project_app, name="billing-project")
app.add_typer(billing.billing_app, name="billing")
app.add_typer(sweeps.sweep_app, name="sweep")
app.add_typer(admin.admin_app, name="admin")

if __name__ == "__main__":  # pragma: no cover
    app()
