"""`BatchHandle`: a submitted batch — status, waiting with a progress bar, jobs, logs, cancel."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any, overload

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)

from corral.client.sync import SyncClient


def _counts(status: dict[str, Any]) -> str:
    return (
        f"[green]{status['n_succeeded']} ok[/] [red]{status['n_failed']} failed[/] "
        f"[yellow]{status['n_cancelled']} cancelled[/]"
    )


class BatchHandle:
    """What `Batch.run()` returns. Reads give plain dicts in the API's shapes, as Hail's client does."""

    def __init__(self, client: SyncClient, batch_id: int) -> None:
        self.client = client
        self.id = batch_id

    def __repr__(self) -> str:
        return f"<BatchHandle {self.id} at {self.client.url}>"

    def status(self) -> dict[str, Any]:
        return self.client.get_batch(self.id).model_dump()

    def wait(
        self, *, progress: bool = True, timeout: float | None = None, console: Console | None = None
    ) -> dict[str, Any]:
        """Poll until the batch is complete; returns its final status. A progress bar shows on a terminal."""
        console = console or Console(stderr=True)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.05
        bar = Progress(
            SpinnerColumn(),
            TextColumn(f"batch {self.id}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            disable=not (progress and console.is_terminal),
            transient=False,
        )
        with bar:
            task = bar.add_task("", total=None)
            while True:
                status = self.status()
                bar.update(
                    task,
                    completed=status["n_completed"],
                    total=status["n_jobs"] or None,
                    description=_counts(status),
                )
                if status["complete"]:
                    return status
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"batch {self.id} is not complete after {timeout}s")
                time.sleep(delay)
                delay = min(delay * 1.5, 1.0)

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
