"""`corral run FILE.py` and `corral demo`."""

from __future__ import annotations

import json
import runpy
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from corral.cli.common import ExitCode, console, err_console, error_line, escape, print_json, styled, table
from corral.errors import CorralError, InvalidInput
from corral.home import default_home

if TYPE_CHECKING:
    from corral.client.handle import BatchHandle


def user_frames(exc: BaseException, script: Path) -> str:
    """The frames of the user's own files (not Corral's, Typer's or runpy's), as Python prints them."""
    root = Path(__file__).resolve().parents[1]  # src/corral
    frames = [
        f for f in traceback.extract_tb(exc.__traceback__)
        if not Path(f.filename).resolve().is_relative_to(root)
        and "site-packages" not in f.filename
        and not f.filename.startswith("<frozen")
        and Path(f.filename).name != "runpy.py"
    ]
    if not frames:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(script)]
    return "".join(traceback.format_list(frames)).rstrip()


def _latest_status(handle: BatchHandle) -> dict[str, Any] | None:
    """The batch's status now, or as last seen when its client is gone (a LocalBackend that stopped)."""
    try:
        return handle.status()
    except (RuntimeError, CorralError):
        return handle.last_status


def _summary(handle: BatchHandle, status: dict[str, Any]) -> str:
    from corral.client.handle import failure_summary

    try:
        return handle.failure_summary(status)
    except (RuntimeError, CorralError):
        return failure_summary(status, [], 0)


def _brief(status: dict[str, Any]) -> dict[str, Any]:
    return {k: status[k] for k in ("id", "state", "n_jobs", "n_succeeded", "n_failed", "n_cancelled")}


def run(
    script: Annotated[Path, typer.Argument(help="A Python pipeline script (it uses corral.Batch)")],
    args: Annotated[list[str] | None, typer.Argument(help="Arguments passed to the script")] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="At the end, print the batches the script ran as JSON")
    ] = False,
) -> None:
    """Run a pipeline script as `python FILE.py ARGS…` would; exit 1 with a summary when a batch it ran
    failed, 6 with the script's own frames when it raised an error."""
    from corral.client.dsl import submitted_batches
    from corral.client.errors import BatchFailed

    if not script.is_file():
        raise InvalidInput(f"{script}: no such file", field="script")
    saved_argv, saved_path = sys.argv[:], sys.path[:]
    sys.argv = [str(script), *(args or [])]
    sys.path.insert(0, str(script.resolve().parent))
    outcome: dict[str, Any] = {"script": str(script), "ok": True}
    try:
        runpy.run_path(str(script), run_name="__main__")
    except BatchFailed as exc:
        err_console.print(f"[red]{escape(exc.message)}[/]", soft_wrap=True)
        if as_json:
            print_json({**outcome, "ok": False, "batches": [_brief(exc.status)]})
        raise typer.Exit(code=ExitCode.FAILED) from None
    except (SystemExit, KeyboardInterrupt, typer.Exit):
        raise
    except Exception as exc:
        frames = user_frames(exc, script.resolve())
        if frames:
            err_console.print(f"[dim]{escape(frames)}[/]", soft_wrap=True)
        what = exc.message if isinstance(exc, CorralError) else f"{type(exc).__name__}: {exc}"
        error_line(f"{script.name} raised {what}")
        if as_json:
            print_json({**outcome, "ok": False, "error": what})
        raise typer.Exit(code=ExitCode.PIPELINE) from None
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    # A script that caught (or never checked) a failure still ends non-zero, with the summary.
    seen = [(h, _latest_status(h)) for h in submitted_batches]
    statuses = [(h, st) for h, st in seen if st is not None]
    failed = [(h, st) for h, st in statuses if st["complete"] and st["state"] != "success"]
    for handle, status in failed:
        err_console.print(f"[red]{escape(_summary(handle, status))}[/]", soft_wrap=True)
    if as_json:
        outcome["ok"] = not failed
        outcome["batches"] = [_brief(st) for _, st in statuses]
        typer.echo(json.dumps(outcome, indent=2))
    if failed:
        raise typer.Exit(code=ExitCode.FAILED)


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
        handle = batch.run(progress=progress and not as_json, check=False)
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
