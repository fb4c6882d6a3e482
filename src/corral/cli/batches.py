"""`corral batch …`: list, inspect, wait for, cancel, delete and retry batches through the REST API."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Annotated, Any

import typer

from corral.cli.common import (
    CorralGroup,
    ExitCode,
    connect,
    console,
    err_console,
    escape,
    money,
    print_json,
    read_client,
    seconds,
    styled,
    table,
)
from corral.cli.jobs import JOB_COLUMNS, job_row, pool_problems

if TYPE_CHECKING:
    from corral.client.reader import Record

batch_app = typer.Typer(
    cls=CorralGroup, no_args_is_help=True, help="List, inspect, wait for, cancel, delete, retry batches."
)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")]
BatchId = Annotated[int, typer.Argument(help="Batch id")]
BATCH_COLUMNS = [
    "id", "name", "state", "done", "ok", "failed", "cancelled", "user", "created", "duration", "cost",
]


def _batch_row(b: Record) -> list[Any]:
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
        money(b.cost),
    ]


def show_batch(b: Record) -> None:
    table(f"batch {b.id}", BATCH_COLUMNS, [_batch_row(b)])
    live = []
    if b.n_running is not None:
        live.append(f"{b.n_running or 0} running")
        live.append(f"{b.n_ready or 0} queued")
        live.append(f"{b.n_pending or 0} waiting for parents")
    waiting = getattr(b, "waiting", None)
    if waiting:
        live.append(f"{waiting} waiting for a machine (see `corral batch jobs {b.id} --state Ready`)")
    if live:
        console.print("now: " + ", ".join(live))


@batch_app.command("list")
def list_batches(
    ctx: typer.Context,
    q: Annotated[str | None, typer.Option("--query", "-q", help="Query: k=v, has:k, states, !term")] = None,
    state: Annotated[str | None, typer.Option(help="Only batches in this state")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="At most this many (newest first)")] = 50,
    as_json: JsonFlag = False,
) -> None:
    """Your batches, newest first, with their cost."""
    with read_client(ctx) as client:
        found = client.list_batches(" ".join(t for t in (q, state) if t) or None, limit=limit)
    if as_json:
        print_json(found.batches)
        return
    table(None, BATCH_COLUMNS, [_batch_row(b) for b in found.batches])
    if not found.batches:
        console.print("no batches yet")


@batch_app.command("get")
def get_batch(ctx: typer.Context, batch_id: BatchId, as_json: JsonFlag = False) -> None:
    """A batch's status: counts, cost, and what its live jobs are doing."""
    with read_client(ctx) as client:
        status = client.get_batch(batch_id)
    if as_json:
        print_json(status)
    else:
        show_batch(status)


@batch_app.command("jobs")
def list_jobs(
    ctx: typer.Context,
    batch_id: BatchId,
    state: Annotated[str | None, typer.Option(help="States or groups: Failed, done, bad, live, …")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000, help="Jobs per page")] = 50,
    after: Annotated[int | None, typer.Option(help="Start after this job id (the next page)")] = None,
    show_all: Annotated[bool, typer.Option("--all", help="Every job, not one page")] = False,
    as_json: JsonFlag = False,
) -> None:
    """A batch's jobs, a page at a time, with why each ended or waits, and a summary by state."""
    with read_client(ctx) as client:
        if show_all:
            jobs = list(client.iter_jobs(batch_id, state=state))
            next_after = None
        else:
            page = client.list_jobs(batch_id, state=state, last_job_id=after, limit=limit)
            jobs, next_after = page.jobs, page.last_job_id
        status = client.get_batch(batch_id)
        problems = pool_problems(client, jobs)
    if as_json:
        print_json(jobs)
        return
    table(f"batch {batch_id}", JOB_COLUMNS, [job_row(j, problems) for j in jobs])
    shown = Counter(j.state for j in jobs)
    counts = ", ".join(f"{n} {s}" for s, n in sorted(shown.items()))
    console.print(
        f"{len(jobs)} jobs shown ({counts or 'none'}); batch {batch_id}: {status.n_succeeded} succeeded, "
        f"{status.n_failed} failed, {status.n_cancelled} cancelled, "
        f"{status.n_jobs - status.n_completed} not finished of {status.n_jobs}"
    )
    if next_after is not None:
        filt = f" --state {state}" if state else ""
        console.print(f"next page: corral batch jobs {batch_id}{filt} --after {next_after}  (or --all)")


@batch_app.command("wait")
def wait_batch(
    ctx: typer.Context,
    batch_id: BatchId,
    timeout: Annotated[float | None, typer.Option(help="Give up after this many seconds (exit 5)")] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar on a terminal")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Wait until a batch is complete; exit 0 only if it succeeded (1 with a summary if not)."""
    from corral.client.handle import BatchHandle
    from corral.client.reader import Record

    with connect(ctx) as client:
        handle = BatchHandle(client, batch_id)
        status = handle.wait(progress=progress and not as_json, timeout=timeout)
        summary = handle.failure_summary(status) if status["state"] != "success" else None
    if as_json:
        print_json(status)
    else:
        show_batch(Record(status))
        if summary:
            err_console.print(f"[red]{escape(summary)}[/]", soft_wrap=True)
    if status["state"] != "success":
        raise typer.Exit(code=ExitCode.FAILED)


@batch_app.command("cancel")
def cancel_batch(ctx: typer.Context, batch_id: BatchId, as_json: JsonFlag = False) -> None:
    """Cancel what has not finished (always_run jobs still run)."""
    with connect(ctx) as client:
        client.cancel_batch(batch_id)
        status = client.get_batch(batch_id)
    if as_json:
        print_json({"id": batch_id, "cancelled": True, "state": status.state})
        return
    console.print(f"batch {batch_id} cancelled (state: {styled(status.state)})")


@batch_app.command("delete")
def delete_batch(ctx: typer.Context, batch_id: BatchId, as_json: JsonFlag = False) -> None:
    """Cancel a batch if it still runs, then delete it."""
    with connect(ctx) as client:
        client.delete_batch(batch_id)
    if as_json:
        print_json({"id": batch_id, "deleted": True})
        return
    console.print(f"batch {batch_id} deleted")


@batch_app.command("retry")
def retry_batch(
    ctx: typer.Context,
    batch_id: BatchId,
    failed: Annotated[
        bool, typer.Option("--failed/--all", help="Only jobs that failed or were cancelled (default), or all")
    ] = True,
    wait: Annotated[bool, typer.Option("--wait", help="Wait for the new batch (exit 1 if it fails)")] = False,
    as_json: JsonFlag = False,
) -> None:
    """Run a finished batch's failed and cancelled jobs again, as a new batch; the jobs that succeeded are
    not rerun (their outputs are reused)."""
    import secrets

    from corral.client.handle import BatchHandle

    final: dict[str, Any] = {}
    summary: str | None = None
    with connect(ctx) as client:
        which = "failed" if failed else "all"
        created = client.retry_batch(batch_id, token=secrets.token_hex(16), which=which)
        status = client.get_batch(created.id)
        if wait:
            handle = BatchHandle(client, created.id)
            final = handle.wait(progress=not as_json)
            summary = handle.failure_summary(final) if final["state"] != "success" else None
    if as_json:
        print_json({"retry_of": batch_id, "id": created.id, "n_jobs": status.n_jobs,
                    **({"state": final["state"]} if wait else {})})
    else:
        console.print(f"batch {created.id} reruns {status.n_jobs} jobs of batch {batch_id}; follow it with "
                      f"`corral batch wait {created.id}`")
    if wait:
        if summary:
            err_console.print(f"[red]{escape(summary)}[/]", soft_wrap=True)
        if final["state"] != "success":
            raise typer.Exit(code=ExitCode.FAILED)
