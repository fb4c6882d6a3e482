"""One `Sweep.run()`: submit what is missing, follow the jobs, merge results as they come, resubmit
failed chunks up to n_max_attempts. Everything it decides from is re-read from the server and the
storage, so a rerun after any crash picks up exactly where things are."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from corral.client.sync import SyncClient
from corral.errors import CorralError
from corral.sweeps import merge, storage, submit
from corral.sweeps.spec import Chunk

if TYPE_CHECKING:
    from corral.sweeps.sweep import Sweep

MERGE_EVERY = 5.0
POLL_MAX = 1.0


def describe_job_failure(client: SyncClient, batch_id: int, job_id: int) -> str:
    """'Failed (exit code 3): <error>; last log line: ...' for a chunk's job."""
    try:
        job = client.get_job(batch_id, job_id)
    except CorralError as exc:
        return f"job {batch_id}/{job_id}: {exc.message}"
    status = job.status or {}
    parts = [f"job {job.state}"]
    if job.exit_code is not None:
        parts[0] += f" (exit code {job.exit_code})"
    error = status.get("error")
    if error:
        parts.append(str(error))
    try:
        tail = [line for line in client.job_step_log(batch_id, job_id, "main").splitlines() if line.strip()]
    except CorralError:
        tail = []
    if tail:
        parts.append(f"last log line: {tail[-1][:300]}")
    return "; ".join(parts)


class SweepRun:
    def __init__(self, sweep: Sweep, chunks: list[Chunk]) -> None:
        self.sweep = sweep
        self.client = sweep.backend.client()
        self.todo = {c.key: c for c in chunks}
        self.done: set[str] = set()
        self.attempts: dict[str, int] = {}
        self.batches: list[int] = []
        self._seen: set[tuple[int, int]] = set()
        self._completed: dict[int, int] = {}  # batch -> n_completed when last listed
        self._finished: set[int] = set()
        self._to_merge: list[Chunk] = []
        self._last_merge = time.monotonic()
        self.exhausted: dict[str, str] = {}

    def _merge(self, chunks: list[Chunk]) -> dict[str, str]:
        report = self.sweep._merge(chunks)
        self.done.update(report.merged)
        return report.problems

    def start(self) -> None:
        # Two run() of the same sweep at once: the second sees the first's jobs live and follows them.
        with storage.exclusive(self.sweep.layout.base, ".submit.lock"):
            self._start()

    def _start(self) -> None:
        state = merge.merged_state(self.sweep.merged_dir)
        self.done = set(state.chunks) & set(self.todo)
        # Live jobs of this sweep (any version: keys are content-addressed) are followed, not resubmitted.
        live_batches = [int(str(b["id"])) for b in submit.sweep_batches(self.client, self.sweep.name,
                                                                         live_only=True)]
        live: set[str] = set()
        for batch_id in live_batches:
            for key, job in submit.iter_chunk_jobs(self.client, batch_id):
                if job.state in submit.LIVE_STATES and key in self.todo:
                    live.add(key)
                    self.attempts[key] = 1
                elif job.state not in submit.LIVE_STATES:
                    self._seen.add((batch_id, job.job_id))  # ended before: its result is checked below
            self.batches.append(batch_id)
        # Results that finished while nobody watched are checked and merged now.
        layout = self.sweep.layout
        existing = submit.chunk_files(layout)
        found = [c for k, c in self.todo.items() if k not in self.done and k not in live
                 and submit.result_url(self.sweep.spec, layout, c).rsplit("/", 1)[-1] in existing]
        if found:
            self._merge(found)
        self._submit([c for k, c in self.todo.items() if k not in self.done and k not in live])

    def _submit(self, chunks: list[Chunk]) -> None:
        if not chunks:
            return
        sweep, layout = self.sweep, self.sweep.layout
        existing = submit.chunk_files(layout)
        submit.write_inputs(layout, chunks, existing)
        fs, folder = storage.filesystem(layout.chunks)
        for c in chunks:  # a stale or corrupt result never passes for the new attempt's
            result = submit.result_url(sweep.spec, layout, c).rsplit("/", 1)[-1]
            if result in existing:
                fs.rm(f"{folder}/{result}", recursive=True)
            self.attempts[c.key] = self.attempts.get(c.key, 0) + 1
        batch_id = submit.submit_chunks(
            self.client, sweep.spec, layout, sweep.version, chunks,
            sweep._billing_project or sweep.backend.billing_project,
            lambda c: sweep._params(c).to_pylist(),
        )
        self.batches.append(batch_id)

    def _failed(self, key: str, problem: str, retry: list[Chunk]) -> None:
        if self.attempts.get(key, 0) < self.sweep.spec.n_max_attempts:
            retry.append(self.todo[key])
        else:
            self.exhausted[key] = problem

    def _poll(self) -> bool:
        """One look at the batches; True while anything is still live."""
        live = False
        retry: list[Chunk] = []
        for batch_id in self.batches:
            if batch_id in self._finished:
                continue
            status = self.client.get_batch(batch_id)
            if status.n_completed != self._completed.get(batch_id):
                self._completed[batch_id] = status.n_completed
                for key, job in submit.iter_chunk_jobs(self.client, batch_id, state="done"):
                    if (batch_id, job.job_id) in self._seen or key not in self.todo:
                        continue
                    self._seen.add((batch_id, job.job_id))
                    if job.state == "Success":
                        self._to_merge.append(self.todo[key])
                    elif job.state == "Cancelled":  # cancelled by someone: not retried
                        self.exhausted[key] = "job cancelled"
                    else:
                        self._failed(key, describe_job_failure(self.client, batch_id, job.job_id), retry)
            if status.complete:
                self._finished.add(batch_id)
            else:
                live = True
        if self._to_merge and (not live or time.monotonic() - self._last_merge >= MERGE_EVERY):
            chunks, self._to_merge = self._to_merge, []
            for key, problem in self._merge(chunks).items():
                self._failed(key, problem, retry)
            self._last_merge = time.monotonic()
        if retry:
            self._submit(retry)
            live = True
        return live or bool(self._to_merge)

    def wait(self, timeout: float | None, report: Callable[[int, str], Any]) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.05
        while True:
            live = self._poll()
            report(len(self.done), f"[red]{len(self.exhausted)} failed[/]" if self.exhausted else "")
            if not live:
                return
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError(f"sweep {self.sweep.name} is not complete after {timeout}s")
            time.sleep(delay)
            delay = min(delay * 1.5, POLL_MAX)
