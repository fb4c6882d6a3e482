"""`corral job …`: a job's status with the reason it ended or waits, its attempts, its logs (--follow)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from corral.cli.common import CorralGroup, console, escape, print_json, read_client, seconds, styled, table

if TYPE_CHECKING:
    from corral.client.reader import ReadClient, Record

job_app = typer.Typer(cls=CorralGroup, no_args_is_help=True, help="Inspect jobs and read their logs.")

JsonFlag = Annotated[bool, typer.Option("--json", help="Print machine-readable JSON")]
BatchId = Annotated[int, typer.Argument(help="Batch id")]
JobId = Annotated[int, typer.Argument(help="Job id within the batch")]
JOB_COLUMNS = ["job", "name", "state", "exit", "duration", "why"]
COMPLETE = frozenset({"Success", "Failed", "Error", "Cancelled"})
FOLLOW_INTERVAL = 1.0


def why(job: Record, pool_problems: dict[str, str] | None = None) -> str:
    """Why the job ended (if it did not succeed) or why it is still waiting, in words."""
    if job.reason:
        return str(job.reason)
    waiting = getattr(job, "waiting_reason", None)
    if waiting:
        return str(waiting)
    if job.state == "Ready" and pool_problems and job.pool in pool_problems:
        return pool_problems[job.pool]
    return ""


def pool_problems(client: ReadClient, jobs: list[Record]) -> dict[str, str]:
    """For pools of queued jobs that cannot bring up instances: what goes wrong there, in words."""
    if not any(j.state == "Ready" for j in jobs):
        return {}
    return {
        p.name: f"waits for pool {p.name}, which cannot bring up instances ({p.health}, {p.n_failures} "
        f"failures in a row): {p.last_error}"
        for p in client.list_pools()
        if p.health != "ok"
    }


def job_row(j: Record, problems: dict[str, str] | None = None) -> list[Any]:
    reason = escape(why(j, problems))
    return [j.job_id, j.name or "", styled(j.state), j.exit_code, seconds(j.duration), reason]


@job_app.command("get")
def get_job(ctx: typer.Context, batch_id: BatchId, job_id: JobId, as_json: JsonFlag = False) -> None:
    """A job's status, why it ended or waits, and its attempts (with the instance each ran on)."""
    with read_client(ctx) as client:
        job = client.get_job(batch_id, job_id)
        attempts = client.job_attempts(batch_id, job_id)
        problems = pool_problems(client, [job])
    if as_json:
        print_json({**job, "attempts": attempts})
        return
    row = [*job_row(job, problems), job.always_run]
    table(f"batch {batch_id} job {job_id}", [*JOB_COLUMNS, "always_run"], [row])
    reason = why(job, problems)
    if reason:
        console.print(f"{'waiting' if job.state not in COMPLETE else 'reason'}: {escape(reason)}")
    if attempts:
        table(
            "attempts",
            ["attempt", "instance", "host", "start", "end", "exit", "ended"],
            [
                [a.attempt_id, a.instance_name, a.instance_host, a.start_time, a.end_time, a.exit_code,
                 a.reason]
                for a in attempts
            ],
        )


def _no_logs_message(client: ReadClient, batch_id: int, job_id: int) -> str:
    job = client.get_job(batch_id, job_id)
    if job.state == "Cancelled":
        return f"job {job_id} of batch {batch_id} was cancelled before it started, so it has no logs" + (
            f" ({job.reason})" if job.reason else ""
        )
    if job.state in ("Pending", "Ready"):
        waiting = why(job)
        return f"job {job_id} of batch {batch_id} has not started yet ({job.state})" + (
            f": {waiting}" if waiting else ""
        )
    return f"job {job_id} of batch {batch_id} has no logs yet ({job.state})"


@job_app.command("log")
def job_log(
    ctx: typer.Context,
    batch_id: BatchId,
    job_id: JobId,
    step: Annotated[str | None, typer.Option(help="input | main | output; default: every step")] = None,
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="Keep printing the main log until the job ends")
    ] = False,
    as_json: JsonFlag = False,
) -> None:
    """A job's logs (latest attempt)."""
    with read_client(ctx) as client:
        if follow:
            _follow(client, batch_id, job_id, step or "main")
            return
        logs = (
            {step: client.job_step_log(batch_id, job_id, step)} if step else client.job_logs(batch_id, job_id)
        )
        empty = None if logs else _no_logs_message(client, batch_id, job_id)
    if as_json:
        print_json(logs)
        return
    if empty:
        console.print(empty)
    for name, text in logs.items():
        if step is None:
            console.rule(f"[bold]{escape(name)}")
        typer.echo(text, nl=not text.endswith("\n"))


def _follow(client: ReadClient, batch_id: int, job_id: int, step: str) -> None:
    """Print the step's log as it grows (the worker sends it while the job runs), until the job ends."""
    printed = ""
    announced = False
    while True:
        job = client.get_job(batch_id, job_id)
        text = client.job_logs(batch_id, job_id).get(step, "")
        # A log that no longer starts with what was printed was cut at its head or is a new attempt's.
        new = text[len(printed) :] if text.startswith(printed) else "\n[corral: the log restarted]\n" + text
        if new:
            typer.echo(new, nl=False)
            printed = text
        if job.state in COMPLETE:
            if not printed and not announced:
                console.print(_no_logs_message(client, batch_id, job_id))
            ended = f" ({job.reason})" if job.reason else ""
            console.print(f"job {job_id} of batch {batch_id} ended: {styled(job.state)}{escape(ended)}")
            return
        if not announced and job.state in ("Pending", "Ready"):
            console.print(f"[dim]{escape(_no_logs_message(client, batch_id, job_id))}; waiting…[/]")
            announced = True
        time.sleep(FOLLOW_INTERVAL)
