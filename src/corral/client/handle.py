"""`BatchHandle`: a submitted batch — status, waiting with a progress bar, jobs, logs, cancel, and a
summary in words of what went wrong."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, overload

from corral.client.errors import BatchFailed, WaitTimeout

if TYPE_CHECKING:
    from rich.console import Console

    from corral.client.sync import SyncClient

SUMMARY_JOBS = 10  # failed jobs named one by one in a summary; the rest are counted


POOL_CHECK_SECONDS = 10.0  # how often a wait with queued jobs and nothing running asks why
WAIT_SHOWN = 1.0  # seconds the server may hold a status request while a progress bar is shown
WAIT_HIDDEN = 10.0  # ... and without one (the client's timeout is 60 s)


def progress_text(status: dict[str, Any], problems: str = "") -> str:
    """'3 running · 5 queued · 2 ok 1 failed 0 cancelled' (rich markup), plus waiting jobs if any."""
    parts = []
    if status.get("n_running") is not None:
        parts.append(f"[cyan]{int(status.get('n_running') or 0)} running[/]")
        parts.append(f"[blue]{int(status.get('n_ready') or 0)} queued[/]")
    if status.get("waiting"):
        parts.append(f"[magenta]{status['waiting']} waiting for a machine[/]")
    parts.append(
        f"[green]{status['n_succeeded']} ok[/] [red]{status['n_failed']} failed[/] "
        f"[yellow]{status['n_cancelled']} cancelled[/]"
    )
    if problems:
        parts.append(f"[red]{problems}[/]")
    return " · ".join(parts)


def failure_summary(status: dict[str, Any], failed: list[dict[str, Any]], n_failed_total: int) -> str:
    """Plain text: which jobs failed and why, what was cancelled, and the command to read the logs."""
    batch_id = status["id"]
    lines = [
        f"batch {batch_id} ended in {status['state']}: {status['n_succeeded']} of {status['n_jobs']} jobs "
        f"succeeded, {status['n_failed']} failed, {status['n_cancelled']} cancelled"
    ]
    for job in failed[:SUMMARY_JOBS]:
        name = f" ({job['name']})" if job.get("name") else ""
        reason = job.get("reason") or f"exit code {job.get('exit_code')}"
        lines.append(f"  job {job['job_id']}{name}: {job['state']}: {reason}")
    if n_failed_total > SUMMARY_JOBS:
        more = n_failed_total - SUMMARY_JOBS
        lines.append(f"  … and {more} more: corral batch jobs {batch_id} --state bad")
    if failed:
        first = failed[0]["job_id"]
        lines.append(f"logs: corral job log {batch_id} {first}   (any job: corral job log {batch_id} JOB_ID)")
    elif status["n_cancelled"]:
        lines.append(f"the batch was cancelled; its jobs: corral batch jobs {batch_id}")
    return "\n".join(lines)


class BatchHandle:
    """What `Batch.run()` returns. Reads give plain dicts in the API's shapes, as Hail's client does."""

    def __init__(self, client: SyncClient, batch_id: int) -> None:
        self.client = client
        self.id = batch_id
        self.last_status: dict[str, Any] | None = None  # as of the last status() call

    def __repr__(self) -> str:
        return f"<BatchHandle {self.id} at {self.client.url}>"

    def status(self, *, wait: float = 0.0) -> dict[str, Any]:
        """The batch's status; with `wait`, once it completes or after `wait` seconds (see get_batch)."""
        self.last_status = self.client.get_batch(self.id, wait=wait).model_dump()
        return self.last_status

    def wait(
        self, *, progress: bool = True, timeout: float | None = None, console: Console | None = None
    ) -> dict[str, Any]:
        """Poll until the batch is complete; returns its final status. A progress bar (running, queued,
        done counts) shows on a terminal. WaitTimeout after `timeout` seconds; on Ctrl-C it says that the
        batch keeps running and how to cancel it, then re-raises KeyboardInterrupt."""
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            SpinnerColumn,
            TextColumn,
            TimeElapsedColumn,
        )

        console = console or Console(stderr=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        shown = progress and console.is_terminal
        delay = 0.05
        bar = Progress(
            SpinnerColumn(),
            TextColumn(f"batch {self.id}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            disable=not shown,
            transient=False,
        )
        problems, checked = "", 0.0
        try:
            with bar:
                task = bar.add_task("", total=None)
                while True:
                    # The server answers the moment the batch completes; a shown bar is refreshed at
                    # least every WAIT_SHOWN seconds meanwhile.
                    asked = WAIT_SHOWN if shown else WAIT_HIDDEN
                    if deadline is not None:
                        asked = max(0.0, min(asked, deadline - time.monotonic()))
                    sent = time.monotonic()
                    status = self.status(wait=asked)
                    stalled = bool(status.get("n_ready")) and not status.get("n_running")
                    if stalled and shown and time.monotonic() - checked > POOL_CHECK_SECONDS:
                        problems, checked = self._pool_problems(), time.monotonic()
                    elif not stalled:
                        problems = ""
                    bar.update(
                        task,
                        completed=status["n_completed"],
                        total=status["n_jobs"] or None,
                        description=progress_text(status, problems),
                    )
                    if status["complete"]:
                        return status
                    if deadline is not None and time.monotonic() > deadline:
                        raise WaitTimeout(
                            f"batch {self.id} is not complete after {timeout:g}s and keeps running: wait "
                            f"again with `corral batch wait {self.id}`, or cancel it with "
                            f"`corral batch cancel {self.id}`",
                            batch_id=self.id,
                        )
                    if time.monotonic() - sent < asked / 2:  # answered at once: a server that does not wait
                        time.sleep(delay)
                        delay = min(delay * 1.5, 1.0)
        except KeyboardInterrupt:
            print(
                f"\nstopped waiting: batch {self.id} keeps running on the server. Follow it with "
                f"`corral batch wait {self.id}`, cancel it with `corral batch cancel {self.id}`.",
                file=sys.stderr,
            )
            raise

    def _pool_problems(self) -> str:
        """Why queued jobs may not start: pools that cannot bring instances up (empty if none)."""
        try:
            pools = self.client.list_pools()
        except Exception:  # an older server, or a hiccup: the bar goes on without the hint
            return ""
        return "; ".join(f"pool {p.name} {p.health}: {p.last_error}" for p in pools if p.health != "ok")

    def failure_summary(self, status: dict[str, Any] | None = None) -> str:
        """In words: which jobs did not succeed and why, and how to read their logs."""
        status = status or self.status()
        failed: list[dict[str, Any]] = []
        total = 0
        for job in self.jobs(state="bad"):
            total += 1
            if len(failed) < SUMMARY_JOBS:
                failed.append(job)
        return failure_summary(status, failed, total)

    def check(self, status: dict[str, Any] | None = None) -> dict[str, Any]:
        """The status if the batch succeeded; BatchFailed (its message: the failure summary) if not."""
        status = status or self.status()
        if status["state"] != "success":
            from corral.client import excepthook

            excepthook.install()  # uncaught, it ends a plain `python script.py` with the summary alone
            raise BatchFailed(self.failure_summary(status), batch_id=self.id, status=status)
        return status

    def jobs(self, state: str | None = None) -> Iterator[dict[str, Any]]:
        """Every job (optionally only in `state`, e.g. 'Failed' or 'bad'), fetched page by page."""
        for job in self.client.iter_jobs(self.id, state=state):
            yield job.model_dump()

    def job(self, job_id: int) -> dict[str, Any]:
        return self.client.get_job(self.id, job_id).model_dump()

    @overload
    def log(self, job_id: int) -> dict[str, str]: ...
    @overload
    def log(self, job_id: int, step: str) -> str: ...
    def log(self, job_id: int, step: str | None = None) -> dict[str, str] | str:
        """{step: text} of the job's latest attempt, or the text of one step (input, main, output)."""
        if step is None:
            return self.client.job_logs(self.id, job_id)
        return self.client.job_step_log(self.id, job_id, step)

    def attempts(self, job_id: int) -> list[dict[str, Any]]:
        return [a.model_dump() for a in self.client.job_attempts(self.id, job_id)]

    def cancel(self) -> None:
        self.client.cancel_batch(self.id)

    def delete(self) -> None:
        self.client.delete_batch(self.id)
