"""`corral batch …` and `corral job …`: read and steer batches through the REST API."""

from __future__ import annotations

from typing import Annotated, Any

import typer
from rich.markup import escape

from corral.api.schemas import BatchStatus, JobSummary
from corral.cli.common import CorralGroup, connect, console, print_json, seconds, styled, table
from corral.client.handle import BatchHandle

batch_app = typer.Typer(
    cls=CorralGroup, no_args_is_help=True, help="List, inspect, wait for, cancel batches."
)
job_app = typer.Typer(cls=CorralGroup, no_args_is_help=True, help="Inspect jobs and read their logs.")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")]
BatchId = Annotated[int, typer.Argument(help="Batch id")]
JobId = Annotated[int, typer.Argument(help="Job id within the batch")]


def _batch_row(b: BatchStatus) -> list[Any]:
    return [
        b.id,
        b.attributes.get("name", ""),
        styled(b.state),
        f"{b.n_completed}/{b.n_jobs}",
        b.n_succeeded,
        b.n_failed,
        b.n_cancelled,
        b.user,
        b.time_created,
        seconds(b.duration),
    ]


def show_batch(b: BatchStatus) -> None:
    table(
        f"batch {b.id}",
        ["id", "name", "state", "done", "ok", "failed", "cancelled", "user", "created", "duration"],
        [_batch_row(b)],
    )


def show_jobs(jobs: list[JobSummary], title: str | None = None) -> None:
    table(
        title,
        ["job", "name", "state", "exit", "duration", "always_run"],
        [
            [j.job_id, j.name or "", styled(j.state), j.exit_code, seconds(j.duration), j.always_run]
            for j in jobs
        ],
    )


@batch_app.command("list")
def list_batches(
    ctx: typer.Context,
    q: Annotated[str | None, typer.Option("--query", "-q", help="Query: k=v, has:k, states, !term")] = None,
    state: Annotated[str | None, typer.Option(help="Only batches in this state")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many (newest first)")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Your batches, newest first."""
    with connect(ctx) as client:
        found = client.list_batches(" ".join(t for t in (q, state) if t) or None, limit=limit)
    if as_json:
        print_json([b.model_dump(mode="json") for b in found.batches])
        return
    rows = [_batch_row(b) for b in found.batches]
    table(
        None,
        ["id", "name", "state", "done", "ok", "failed", "cancelled", "user", "created", "duration"],
        rows,
    )


@batch_app.command("get")
def get_batch(ctx: typer.Context, batch_id: BatchId, as_json: JsonFlag = False) -> None:
    """A batch's status."""
    with connect(ctx) as client:
        status = client.get_batch(batch_id)
    if as_json:
        print_json(status.model_dump(mode="json"))
    else:
        show_batch(status)


@batch_app.command("jobs")
def list_jobs(
    ctx: typer.Context,
    batch_id: BatchId,
    state: Annotated[str | None, typer.Option(help="States or groups: Failed, done, bad, …")] = None,
    as_json: JsonFlag = False,
) -> None:
    """A batch's jobs."""
    with connect(ctx) as client:
        jobs = list(client.iter_jobs(batch_id, state=state))
    if as_json:
        print_json([j.model_dump(mode="json") for j in jobs])
    else:
        show_jobs(jobs, f"batch {batch_id}")


@batch_app.command("wait")
def wait_batch(
    ctx: typer.Context,
    batch_id: BatchId,
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on a terminal")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Wait until a batch is complete; exit code 0 only if it succeeded."""
    with connect(ctx) as client:
        status = BatchHandle(client, batch_id).wait(progress=progress and not as_json, timeout=timeout)
    if as_json:
        print_json(status)
    else:
        show_batch(BatchStatus.model_validate(status))
    if status["state"] != "success":
        raise typer.Exit(code=1)


@batch_app.command("cancel")
def cancel_batch(ctx: typer.Context, batch_id: BatchId) -> None:
    """Cancel what has not finished (always_run jobs still run)."""
    with connect(ctx) as client:
        client.cancel_batch(batch_id)
    console.print(f"batch {batch_id} cancelled")


@batch_app.command("delete")
def delete_batch(ctx: typer.Context, batch_id: BatchId) -> None:
    """Cancel a batch if it still runs, then delete it."""
    with connect(ctx) as client:
        client.delete_batch(batch_id)
    console.print(f"batch {batch_id} deleted")


@job_app.command("get")
def get_job(ctx: typer.Context, batch_id: BatchId, job_id: JobId, as_json: JsonFlag = False) -> None:
    """A job's status (and its attempts)."""
    with connect(ctx) as client:
        job = client.get_job(batch_id, job_id)
        attempts = client.job_attempts(batch_id, job_id)
    if as_json:
        print_json({**job.model_dump(mode="json"), "attempts": [a.model_dump(mode="json") for a in attempts]})
        return
    show_jobs([job], f"batch {batch_id} job {job_id}")
    if attempts:
        table(
            "attempts",
            ["attempt", "instance", "start", "end", "exit", "reason"],
            [
                [a.attempt_id, a.instance_name, a.start_time, a.end_time, a.exit_code, a.reason]
                for a in attempts
            ],
        )


@job_app.command("log")
def job_log(
    ctx: typer.Context,
    batch_id: BatchId,
    job_id: JobId,
    step: Annotated[str | None, typer.Option(help="input | main | output; default: every step")] = None,
    as_json: JsonFlag = False,
) -> None:
    """A job's logs (latest attempt)."""
    with connect(ctx) as client:
        logs = (
            {step: client.job_step_log(batch_id, job_id, step)} if step else client.job_logs(batch_id, job_id)
        )
    if as_json:
        print_json(logs)
        return
    if not logs:
        console.print(f"job {job_id} of batch {batch_id} has no logs yet")
    for name, text in logs.items():
        if step is None:
            console.rule(f"[bold]{escape(name)}")
        typer.echo(text, nl=not text.endswith("\n"))
