"""`corral sweep run|status|results|retry|watch`: thin commands over corral.sweeps."""

from __future__ import annotations

import signal
from pathlib import Path
from types import FrameType
from typing import Annotated, Any

import typer

from corral.cli.common import console, err_console, print_json, table, target
from corral.client.backends import ServiceBackend
from corral.errors import CorralError
from corral.sweeps.progress import SweepStatus

sweep_app = typer.Typer(no_args_is_help=True, help="Parameter sweeps: a table in, one dataset out.")

ResultsOpt = Annotated[
    str | None,
    typer.Option("--results", help="The sweep's storage URL, if not the server's corral-local bucket"),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON")]


def _backend(ctx: typer.Context) -> ServiceBackend:
    t = target(ctx)
    return ServiceBackend(t.url, t.token)


def _show(status: SweepStatus, as_json: bool) -> None:
    if as_json:
        print_json(status.to_dict())
        return
    console.print(status.summary())
    console.print(f"merged dataset: {status.merged_dir}")
    if status.failures:
        table("failed chunks", ["chunk", "rows", "tries", "error", "log"],
              [[f.index, f.rows, f.attempts, f.error, f.log or ""] for f in status.failures])


@sweep_app.command("run")
def run(
    ctx: typer.Context,
    spec: Annotated[Path, typer.Argument(help="The sweep's YAML file")],
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait for every chunk")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Run a sweep: submit every chunk without a valid result, merge results as they come."""
    from corral.sweeps.specfile import read_spec_file, sweep_arguments
    from corral.sweeps.sweep import Sweep

    parsed, folder = read_spec_file(spec)
    sweep = Sweep(**sweep_arguments(parsed, folder), backend=_backend(ctx))
    status = sweep.run(wait=wait, progress=not as_json)
    _show(status, as_json)
    if wait and not status.complete:
        raise typer.Exit(code=1)


@sweep_app.command("status")
def status(ctx: typer.Context, name: str, results: ResultsOpt = None, as_json: JsonOpt = False) -> None:
    """Chunks merged, running, failed (rows, error, log) and waiting."""
    from corral.sweeps.sweep import Sweep

    _show(Sweep.load(name, backend=_backend(ctx), results_url=results).status(), as_json)


@sweep_app.command("results")
def results(
    ctx: typer.Context,
    name: str,
    format: Annotated[str, typer.Option("--format", help="parquet or csv")] = "parquet",
    to: Annotated[str | None, typer.Option("--to", help="Write one file at this path or URL")] = None,
    results: ResultsOpt = None,
) -> None:
    """Merge valid results; print where the merged dataset is, or write it to --to."""
    from corral.sweeps.sweep import Sweep

    if format not in ("parquet", "csv"):
        raise CorralError(f"--format: {format!r} is not parquet or csv", field="format")
    sweep = Sweep.load(name, backend=_backend(ctx), results_url=results)
    if to is not None:
        url = sweep.results(to=to, format=format)
        console.print(f"wrote {url}")
        return
    report = sweep.merge()
    status = sweep.status()
    console.print(f"{status.merged_rows:,} rows from {status.merged}/{status.n_chunks} chunks"
                  + (f" ({len(report.merged)} merged now)" if report.merged else ""))
    typer.echo(sweep.results_path())


@sweep_app.command("retry")
def retry(
    ctx: typer.Context,
    name: str,
    failed: Annotated[bool, typer.Option("--failed/--all", help="Only chunks that failed (default)")] = True,
    wait: Annotated[bool, typer.Option("--wait/--no-wait")] = True,
    results: ResultsOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Run again the chunks that failed (or every chunk without a valid result, with --all)."""
    from corral.sweeps.sweep import Sweep

    sweep = Sweep.load(name, backend=_backend(ctx), results_url=results)
    status = sweep.retry(failed=failed, wait=wait, progress=not as_json)
    _show(status, as_json)
    if wait and not status.complete:
        raise typer.Exit(code=1)


def _stop(signum: int, _frame: FrameType | None) -> Any:
    raise KeyboardInterrupt


@sweep_app.command("watch")
def watch(
    ctx: typer.Context,
    folder: Annotated[Path, typer.Argument(help="The job folder (inbox/, running/, done/, ...)")],
    command: Annotated[str, typer.Option("--command", help="Template with {chunk} and {result}")],
    image: Annotated[str | None, typer.Option("--image")] = None,
    cpu: Annotated[str | None, typer.Option("--cpu")] = None,
    memory: Annotated[str | None, typer.Option("--memory")] = None,
    pool: Annotated[str | None, typer.Option("--pool")] = None,
    timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds per job")] = None,
    result_format: Annotated[str, typer.Option("--result-format", help="parquet, csv or jsonl")] = "parquet",
    schema: Annotated[list[str] | None, typer.Option("--schema", help="column=type")] = None,
    poll: Annotated[float, typer.Option("--poll", help="Seconds between looks")] = 1.0,
    once: Annotated[bool, typer.Option("--once", help="Stop when nothing is left")] = False,
) -> None:
    """Watch a job folder: files dropped in inbox/ run as jobs and move to done/ or failed/."""
    from corral.sweeps.spec import parse_schema
    from corral.sweeps.watch import FolderWatcher, WatchOptions

    pairs: dict[str, str] = {}
    for item in schema or []:
        column, sep, kind = item.partition("=")
        if not sep:
            raise CorralError(f"--schema: {item!r} must be column=type", field="schema")
        pairs[column] = kind
    options = WatchOptions(command=command, image=image, cpu=cpu, memory=memory, pool=pool, timeout=timeout,
                           result_format=result_format, schema=parse_schema(pairs or None))
    watcher = FolderWatcher(folder, options, _backend(ctx))
    signal.signal(signal.SIGTERM, _stop)
    last = [""]

    def report(counts: Any) -> None:
        if str(counts) != last[0]:
            last[0] = str(counts)
            err_console.print(f"{folder}: {counts}")

    try:
        counts = watcher.watch(poll=poll, once=once, report=report,
                               report_error=lambda m: err_console.print(f"[yellow]waiting:[/] {m}"))
    except KeyboardInterrupt:
        err_console.print("stopped; restart the watcher to resume")
        return
    console.print(f"{folder}: {counts}")
