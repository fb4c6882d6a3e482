"""`corral server` and `corral worker`: thin wrappers over the server and worker entry points."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from corral.errors import InvalidInput

if TYPE_CHECKING:
    from corral.config import Settings

URL_FILE_NAME = "server.url"  # corral.client.discovery.URL_FILE_NAME, without importing the client


def _env(name: str) -> str:
    return f"\\[env: CORRAL_{name.upper()}]"


def server(
    config: Annotated[
        Path | None,
        typer.Option(help="TOML file: instance collections, images, buckets, … [env: CORRAL_CONFIG]"),
    ] = None,
    home: Annotated[Path | None, typer.Option(help=f"State directory {_env('home')}")] = None,
    database_url: Annotated[
        str | None, typer.Option(help=f"SQLAlchemy URL; default SQLite under home {_env('database_url')}")
    ] = None,
    host: Annotated[str | None, typer.Option(help=f"Address to bind {_env('host')}")] = None,
    port: Annotated[int | None, typer.Option(help=f"Port; 0 picks a free one {_env('port')}")] = None,
    url_file: Annotated[
        Path | None, typer.Option(help=f"Where to write {{url}} once ready; default HOME/{URL_FILE_NAME}")
    ] = None,
    local_workers: Annotated[int | None, typer.Option(help=f"Local workers {_env('local_workers')}")] = None,
    local_worker_cores: Annotated[
        float | None, typer.Option(help=f"Cores per local worker {_env('local_worker_cores')}")
    ] = None,
    local_worker_memory: Annotated[
        str | None, typer.Option(help=f"Memory per local worker, e.g. 4Gi {_env('local_worker_memory')}")
    ] = None,
    local_worker_runtime: Annotated[
        str | None, typer.Option(
            help=f"process | noop | oci | host (host: no sandbox, needs [jobs] allow_host_runtime) "
            f"{_env('local_worker_runtime')}"
        )
    ] = None,
    pool: Annotated[str | None, typer.Option(help=f"Default pool {_env('pool')}")] = None,
    pool_choice: Annotated[
        str | None, typer.Option(help=f"default | cheapest (jobs naming no pool) {_env('pool_choice')}")
    ] = None,
    commit_interval: Annotated[
        float | None,
        typer.Option(help=f"Seconds the driver gathers changes into one commit {_env('commit_interval')}"),
    ] = None,
    heartbeat_interval: Annotated[
        float | None, typer.Option(help=f"Seconds between worker heartbeats {_env('heartbeat_interval')}")
    ] = None,
    heartbeat_timeout: Annotated[
        float | None,
        typer.Option(help=f"An instance silent this many seconds is lost {_env('heartbeat_timeout')}"),
    ] = None,
    max_body_bytes: Annotated[
        int | None, typer.Option(help=f"Largest request body the API accepts {_env('max_body_bytes')}")
    ] = None,
    admin_user: Annotated[
        str | None, typer.Option(help=f"Name of the administrator created at start {_env('admin_user')}")
    ] = None,
    default_user: Annotated[
        str | None,
        typer.Option(help=f"The user of HOME/tokens.json (default $USER) {_env('default_user')}"),
    ] = None,
    cost_per_core_hour: Annotated[
        float | None, typer.Option(help=f"Price of a core-hour on local workers {_env('cost_per_core_hour')}")
    ] = None,
    hail_compat_dir: Annotated[
        Path | None,
        typer.Option(help=f"Serve the stock hailtop client over HTTPS {_env('hail_compat_dir')}"),
    ] = None,
    hail_user: Annotated[
        str | None, typer.Option(help=f"User of the Hail tokens.json {_env('hail_user')}")
    ] = None,
) -> None:
    """Run the API, the driver and the local workers in one process (until Ctrl-C / SIGTERM)."""
    given = {k: v for k, v in locals().items() if v is not None and k != "config"}
    if config is not None:
        os.environ["CORRAL_CONFIG"] = str(config.resolve())  # read by Settings; inherited by nothing secret
    settings = build_settings(given)
    from corral.server import serve

    serve(settings)


def build_settings(options: dict[str, Any]) -> Settings:
    """Settings from the options given (the rest from CORRAL_* variables); the url file defaults to
    HOME/server.url so that clients on this machine find the server."""
    from corral.config import load_settings

    settings = load_settings(**options)
    if settings.url_file is None and not os.environ.get("CORRAL_URL_FILE"):
        settings.url_file = settings.home / URL_FILE_NAME
    return settings


def worker(
    url: Annotated[str, typer.Option(envvar="CORRAL_URL", help="The driver's URL")],
    name: Annotated[str, typer.Option(envvar="CORRAL_INSTANCE_NAME", help="This instance's name")],
    token: Annotated[str, typer.Option(envvar="CORRAL_WORKER_TOKEN", help="This instance's token")],
    cores: Annotated[
        float | None, typer.Option(envvar="CORRAL_WORKER_CORES", help="Cores to offer; default all")
    ] = None,
    memory: Annotated[
        str | None, typer.Option(envvar="CORRAL_WORKER_MEMORY", help="Memory to offer (bytes or 4Gi)")
    ] = None,
    runtime: Annotated[
        str,
        typer.Option(
            envvar="CORRAL_WORKER_RUNTIME",
            help="How jobs run: process | noop | oci | host (host: unsandboxed, for trusted single-user "
            "machines; the site must set [jobs] allow_host_runtime = true)",
        ),
    ] = "process",
    work_dir: Annotated[
        Path | None, typer.Option(envvar="CORRAL_WORKER_WORK_DIR", help="Scratch space for jobs")
    ] = None,
    stop_on_term: Annotated[
        bool,
        typer.Option(envvar="CORRAL_WORKER_STOP_ON_TERM",
                     help="SIGTERM stops at once and gives running jobs back (SLURM pilots)"),
    ] = False,
) -> None:
    """Run a worker agent that takes jobs from the driver at URL."""
    if cores is not None and cores <= 0:
        raise InvalidInput(f"--cores: {cores} must be positive", field="cores")
    from corral.domain.resources import parse_bytes

    memory_bytes = None if memory is None else parse_bytes(memory, field="--memory")
    from corral.worker.agent import run_worker

    run_worker(
        url, name, token, cores=cores, memory_bytes=memory_bytes, runtime=runtime, work_dir=work_dir,
        stop_on_term=stop_on_term,
    )
