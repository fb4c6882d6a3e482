"""`corral bench …`: benchmark sessions (a recipe -> one batch + results + a report)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from corral.cli.common import (
    CorralGroup,
    connect,
    console,
    err_console,
    escape,
    print_json,
    styled,
    table,
    target,
)

if TYPE_CHECKING:
    from corral.client.backends import ServiceBackend

bench_app = typer.Typer(
    cls=CorralGroup,
    no_args_is_help=True,
    help="Benchmark sessions: run a recipe, watch it, report, compare runs.",
)
JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")]
SessionRef = Annotated[str, typer.Argument(help="Session id or name")]


def _backend(ctx: typer.Context) -> ServiceBackend:
    t = target(ctx)
    from corral.client.backends import ServiceBackend

    return ServiceBackend(t.url, t.token)


@bench_app.command("run")
def run(
    ctx: typer.Context,
    recipe: Annotated[Path, typer.Argument(help="Recipe (YAML)", exists=True, dir_okay=False)],
    pool: Annotated[str | None, typer.Option(help="Pool for the service and clients")] = None,
    name: Annotated[str | None, typer.Option(help="Session name (default: the recipe's)")] = None,
    out: Annotated[Path | None, typer.Option(help="Report directory (default ./bench-NAME-ID)")] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Submit and return; `bench report` later")
    ] = False,
) -> None:
    """Run a session: validate the recipe, submit its batch, show progress, write the report."""
    from corral.sessions import runner
    from corral.sessions.recipe import load_recipe

    parsed = load_recipe(recipe)
    backend = _backend(ctx)
    session = runner.submit(parsed, backend, name=name, pool=pool)
    console.print(f"session {escape(session['name'])} #{session['id']}: batch {session['batch_id']}")
    if detach:
        return
    client = backend.client()
    runner.wait(client, session, lambda line: err_console.print(escape(line)))
    outcome = runner.finalize(
        client, session["id"], out or Path(f"bench-{session['name']}-{session['id']}")
    )
    _summary(outcome)
    if outcome.state != "success" or outcome.verdicts_failed:
        raise typer.Exit(code=2)


def _summary(outcome: object) -> None:
    from corral.sessions.runner import SessionOutcome

    assert isinstance(outcome, SessionOutcome)
    console.print(
        f"session {escape(outcome.name)} #{outcome.id}: {styled(outcome.state)}"
        + (f"; failed cells: {', '.join(outcome.failed_cells)}" if outcome.failed_cells else "")
        + (f"; {outcome.verdicts_failed} SLO/reference verdicts failed" if outcome.verdicts_failed else "")
    )
    if outcome.report is not None:
        console.print(f"report: {outcome.report}")


@bench_app.command("list")
def list_(ctx: typer.Context, as_json: JsonFlag = False) -> None:
    """Your benchmark sessions, newest first."""
    from corral.sessions import runner

    sessions = runner.list_sessions(connect(ctx))
    if as_json:
        print_json(sessions)
        return
    table(
        None,
        ["id", "name", "state", "batch", "recipe"],
        [[s["id"], s["name"], styled(s["state"]), s["batch_id"], s["recipe_hash"][:12]] for s in sessions],
    )


@bench_app.command("status")
def status(ctx: typer.Context, session: SessionRef, as_json: JsonFlag = False) -> None:
    """Where a session is: the cell running, its service's state, clients done."""
    from corral.sessions import runner

    client = connect(ctx)
    found = runner.get_session(client, session)
    line, complete = runner.progress_line(client, found)
    if as_json:
        print_json({**found, "progress": line, "complete": complete})
        return
    console.print(f"{escape(line)}\nstate: {styled(found['state'])}")


@bench_app.command("stop")
def stop(ctx: typer.Context, session: SessionRef) -> None:
    """Stop a session: its batch is cancelled (services stopped, clients killed)."""
    from corral.sessions import runner

    found = runner.stop(connect(ctx), session)
    console.print(f"session {escape(found['name'])} #{found['id']}: batch {found['batch_id']} cancelled")


@bench_app.command("report")
def report(
    ctx: typer.Context,
    session: SessionRef,
    out: Annotated[Path | None, typer.Option(help="Report directory (default ./bench-NAME-ID)")] = None,
) -> None:
    """(Re)build a session's results and report from its batch (also after an interrupted `run`)."""
    from corral.sessions import runner

    client = connect(ctx)
    found = runner.get_session(client, session)
    outcome = runner.finalize(client, found["id"], out or Path(f"bench-{found['name']}-{found['id']}"))
    _summary(outcome)


@bench_app.command("compare")
def compare(
    ctx: typer.Context,
    a: Annotated[str, typer.Argument(help="Baseline: session id/name, or a report directory")],
    b: Annotated[str, typer.Argument(help="Candidate: session id/name, or a report directory")],
    tolerance: Annotated[float, typer.Option(help="Allowed change for the worse (0.1 = 10%)")] = 0.1,
    metric: Annotated[list[str] | None, typer.Option(help="Metrics to compare (repeatable)")] = None,
    as_json: JsonFlag = False,
) -> None:
    """Per cell and metric: Δ%, 95% CIs, a significance verdict. Exit 3 on a regression beyond tolerance."""
    from corral.sessions import runner

    local = Path(a).exists() and Path(b).exists()
    client = None if local else connect(ctx)
    rows = runner.compare_sessions(client, a, b, tolerance=tolerance, metrics=metric)
    regressions = [r for r in rows if r.regression]
    if as_json:
        print_json({"comparisons": [r.to_wire() for r in rows], "regressions": len(regressions)})
    else:

        def f(v: float | None, ci: float | None = None) -> str:
            return "—" if v is None else f"{v:.4g}" + (f" ± {ci:.2g}" if ci is not None else "")

        table(
            f"{a} -> {b} (tolerance {tolerance:.0%})",
            ["cell", "params", "client", "metric", "A", "B", "Δ", "significant", "verdict"],
            [
                [
                    r.cell,
                    json.dumps(r.params, sort_keys=True),
                    r.client,
                    r.metric,
                    f(r.a, r.a_ci),
                    f(r.b, r.b_ci),
                    "—" if r.delta is None else f"{r.delta:+.1%}",
                    {True: "yes", False: "no", None: "n/a"}[r.significant],
                    "[red]REGRESSION[/]" if r.regression else "ok",
                ]
                for r in rows
            ],
        )
    if regressions:
        raise typer.Exit(code=3)


@bench_app.command("types")
def types(as_json: JsonFlag = False) -> None:
    """Service and client types: built-in and from entry points (corral.bench.services / .clients)."""
    from corral.sessions.registry import REGISTRY

    REGISTRY.load()
    rows = [
        ["service", n, c.description, REGISTRY.origins.get(f"corral.bench.services:{n}", "built-in")]
        for n, c in sorted(REGISTRY.services.items())
    ]
    rows += [
        ["client", n, c.description, REGISTRY.origins.get(f"corral.bench.clients:{n}", "built-in")]
        for n, c in sorted(REGISTRY.clients.items())
    ]
    if as_json:
        print_json([{"kind": r[0], "name": r[1], "description": r[2], "origin": r[3]} for r in rows])
        return
    table(None, ["kind", "name", "description", "from"], rows)
