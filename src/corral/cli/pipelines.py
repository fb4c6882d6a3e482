"""`corral run FILE.py` and `corral demo`."""

from __future__ import annotations

import runpy
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from corral.cli.common import console, print_json, styled, table
from corral.config import default_home
from corral.errors import InvalidInput


def run(
    script: Annotated[Path, typer.Argument(help="A Python pipeline script (it uses corral.Batch)")],
    args: Annotated[list[str] | None, typer.Argument(help="Arguments passed to the script")] = None,
) -> None:
    """Run a pipeline script as `python FILE.py ARGS…` would."""
    if not script.is_file():
        raise InvalidInput(f"{script}: no such file", field="script")
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [str(script), *(args or [])]
    sys.path.insert(0, str(script.resolve().parent))
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path


def demo(
    out: Annotated[Path, typer.Option(help="Where the merged word counts go")] = Path("corral-demo-out"),
    slices: Annotated[int, typer.Option(min=1, max=500, help="Word-count jobs in the fan-out")] = 20,
    home: Annotated[
        Path | None, typer.Option(envvar="CORRAL_HOME", help="The embedded system's home (~/.corral)")
    ] = None,
    workers: Annotated[int, typer.Option(min=1, help="Local workers if a server is started")] = 1,
    cores: Annotated[float | None, typer.Option(help="Cores per local worker; default all")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on a terminal")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")] = False,
) -> None:
    """Run a word-count pipeline (fan-out, fan-in, a deliberate failure) on the embedded system."""
    from corral.cli.demo import build_demo, check, summary, top_words
    from corral.client.backends import LocalBackend
    from corral.client.dsl import Batch

    home = home or default_home()
    with LocalBackend(home=home, workers=workers, cores=cores) as backend:
        if not as_json:
            console.print(f"starting (or reusing) the embedded Corral for {home} …")
        batch = Batch(name="corral-demo", backend=backend, attributes={"demo": "wordcount"})
        pipeline = build_demo(batch, out.resolve(), slices=slices)
        handle = batch.run(progress=progress and not as_json)
        status = handle.status()
        states = {j["job_id"]: j["state"] for j in handle.jobs()}
        failing = pipeline.failing.job_id if pipeline.failing else None
        failing_log = handle.log(failing) if failing else {}
        started_here = backend.started_server
    problems = check(pipeline, states)
    if as_json:
        print_json(summary(pipeline, status, states))
        raise typer.Exit(code=1 if problems else 0)
    console.print(
        f"\nbatch [bold]{status['id']}[/]: {styled(status['state'])} — {status['n_succeeded']} succeeded, "
        f"{status['n_failed']} failed, {status['n_cancelled']} cancelled of {status['n_jobs']} jobs"
    )
    names = {j.job_id: j._name for j in batch.jobs}
    table(
        "jobs",
        ["job", "name", "state"],
        [[j, names.get(j, ""), styled(s)] for j, s in sorted(states.items())],
    )
    console.print(
        "[dim]The batch state is 'failure' by design: job "
        f"{failing} fails on purpose, so its normal child is Cancelled and its always_run cleanup child "
        "still runs.[/]"
    )
    if failing_log:
        console.print(f"\nlog of the failing job {failing}:")
        for step, text in failing_log.items():
            console.print(f"  [bold]{escape(step)}[/]: {escape(text.strip())}")
    hint = " (start `corral server` first: the demo stopped the server it started)" if started_here else ""
    console.print(f"logs: corral job log {status['id']} JOB_ID{hint}")
    if pipeline.output.exists():
        console.print(f"\nmerged word counts: {pipeline.output}")
        table("top words", ["word", "count"], [[w, c] for w, c in top_words(pipeline.output)])
    if problems:
        console.print("[red]the demo did not behave as designed:[/]")
        for problem in problems:
            console.print(f"  - {escape(problem)}")
        raise typer.Exit(code=1)
    console.print("[green]the demo behaved as designed[/] (the failure above was deliberate)")
