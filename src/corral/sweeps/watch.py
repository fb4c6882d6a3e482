"""Job-folder mode: `corral sweep watch DIR --command '... {chunk} ... {result}'`.

DIR/inbox/     drop job files here (CSV, Parquet, JSON lines: a slice of a parameter table)
DIR/running/   moved here atomically when picked up; one Corral job each
DIR/done/      its job succeeded and its result is readable (and has --schema's columns)
DIR/failed/    the job or its result failed; NAME.reason.txt beside it says why
DIR/results/   NAME's result (NAME's stem + .parquet/.csv/.jsonl)
DIR/.corral/   the watcher's own records (one JSON per running file: submission token, batch id)

Each step is a rename or an idempotent submission (the token is written before the batch is
created), so a watcher killed at any moment and restarted resumes exactly: no file is lost, and no
file runs twice.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from corral.api.schemas import BatchSpec, EnvVar, FileTransfer, JobSpec, ProcessSpec, ResourcesSpec
from corral.client.backends import Backend
from corral.client.compile import SHELL
from corral.client.submit import submit_new_batch
from corral.errors import Conflict, CorralError, InvalidInput
from corral.sweeps import storage
from corral.sweeps.check import ResultProblem, conform, read_result_file
from corral.sweeps.command import RESULT_FORMATS, parse_template
from corral.sweeps.runner import describe_job_failure

FOLDERS = ("inbox", "running", "done", "failed", "results")
JOB_FILE_SUFFIXES = (".csv", ".parquet", ".pq", ".jsonl", ".tsv")
ATTR_WATCH = "sweep_watch"


@dataclass
class WatchOptions:
    command: str
    image: str | None = None
    cpu: str | None = None
    memory: str | None = None
    pool: str | None = None
    timeout: float | None = None
    result_format: str = "parquet"
    schema: pa.Schema | None = None
    billing_project: str | None = None
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class WatchCounts:
    submitted: int = 0
    done: int = 0
    failed: int = 0

    def __str__(self) -> str:
        return f"{self.submitted} submitted, {self.done} done, {self.failed} failed"


class FolderWatcher:
    def __init__(self, folder: Path, options: WatchOptions, backend: Backend) -> None:
        self.folder = folder.resolve()
        self.options = options
        self.backend = backend
        if options.result_format not in RESULT_FORMATS:
            raise InvalidInput(f"result_format: {options.result_format!r} is not one of "
                               f"{', '.join(RESULT_FORMATS)}", field="result_format")
        self.template = parse_template(options.command, [])
        if self.template.per_row:
            raise InvalidInput("command: in job-folder mode use {chunk} and {result} only", field="command")
        self.counts = WatchCounts()
        for name in (*FOLDERS, ".corral"):
            (self.folder / name).mkdir(parents=True, exist_ok=True)
        self._lock: Any = None

    def dir(self, name: str) -> Path:
        return self.folder / name

    def record(self, name: str) -> Path:
        return self.folder / ".corral" / f"{name}.json"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        """One watcher per folder."""
        with open(self.folder / ".corral" / "lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise Conflict(f"another watcher is running on {self.folder}", field="dir") from None
            yield

    # ---- one pass

    def inbox(self) -> list[str]:
        return sorted(
            e.name for e in os.scandir(self.dir("inbox"))
            if e.is_file() and not e.name.startswith(".") and e.name.lower().endswith(JOB_FILE_SUFFIXES)
        )

    def step(self) -> int:
        """Pick up new files, submit what is not submitted, settle what ended; returns files in flight."""
        for name in self.inbox():
            with contextlib.suppress(FileNotFoundError):  # taken meanwhile (moved back by hand, ...)
                os.rename(self.dir("inbox") / name, self.dir("running") / name)
        running = sorted(e.name for e in os.scandir(self.dir("running")) if e.is_file()
                         and not e.name.startswith("."))
        for record in self.dir(".corral").glob("*.json"):  # records of files already settled
            if record.name[: -len(".json")] not in running:
                record.unlink(missing_ok=True)
        for name in running:
            data = storage.read_json(self.record(name).as_uri()) if self.record(name).exists() else None
            if data is None:
                data = {"token": secrets.token_hex(16)}
                storage.write_json(self.record(name).as_uri(), data)
            if "batch_id" not in data:
                try:
                    data["batch_id"] = self._submit(name, data["token"])
                except CorralError as exc:
                    if exc.status_code >= 500:
                        raise  # the server is away: the loop waits and tries again with the same token
                    self._finish(name, f"the server refused the job: {exc.message}")
                    continue
                storage.write_json(self.record(name).as_uri(), data)
                self.counts.submitted += 1
            self._settle(name, int(data["batch_id"]))
        return len([n for n in running if (self.dir("running") / n).exists()])

    def _result_path(self, name: str) -> Path:
        return self.dir("results") / f"{name.rsplit('.', 1)[0]}.{self.options.result_format}"

    def _submit(self, name: str, token: str) -> int:
        ext = name.rsplit(".", 1)[-1].lower()
        chunk = f"/io/chunk.{ext}"
        result = f"/io/result.{self.options.result_format}"
        script = self.template.text.format(chunk=chunk, result=result)
        o = self.options
        job = JobSpec(
            job_id=1, name=name,
            process=ProcessSpec(image=o.image, command=[SHELL, "-c", f"set -e\n{script}"]),
            resources=ResourcesSpec(cpu=o.cpu, memory=o.memory),
            env=[EnvVar(name=k, value=v) for k, v in o.env.items()],
            timeout=o.timeout, attributes={"name": name, ATTR_WATCH: str(self.folder)},
            input_files=[FileTransfer.model_validate({"from": (self.dir("running") / name).as_uri(),
                                                       "to": chunk})],
            output_files=[FileTransfer.model_validate({"from": result,
                                                        "to": self._result_path(name).as_uri()})],
            **({"pool": o.pool} if o.pool else {}),
        )
        batch = BatchSpec(
            billing_project=o.billing_project or self.backend.billing_project, token=token,
            attributes={"name": f"watch {name}", ATTR_WATCH: str(self.folder), "file": name},
        )
        client = self.backend.client()
        return client.run(submit_new_batch(client.aio, batch, [job])).batch_id

    def _settle(self, name: str, batch_id: int) -> None:
        client = self.backend.client()
        status = client.get_batch(batch_id)
        if not status.complete:
            return
        reason: str | None = None
        if status.n_succeeded != 1:
            reason = describe_job_failure(client, batch_id, 1)
        else:
            try:
                table = read_result_file(self._result_path(name).as_uri(), self.options.result_format)
                if self.options.schema is not None:
                    conform(table, self.options.schema, f"the result of {name}")
            except ResultProblem as exc:
                reason = exc.message
        self._finish(name, reason, f"corral job log {batch_id} 1")

    def _finish(self, name: str, reason: str | None, log: str | None = None) -> None:
        """running/NAME -> done/ or failed/ (the reason written beside it first)."""
        target = "done" if reason is None else "failed"
        if reason is not None:
            text = reason + (f"\nlog: {log}" if log else "") + "\n"
            storage.write_atomically((self.dir("failed") / f"{name}.reason.txt").as_uri(), text.encode())
        os.rename(self.dir("running") / name, self.dir(target) / name)
        self.record(name).unlink(missing_ok=True)
        if reason is None:
            self.counts.done += 1
        else:
            self.counts.failed += 1

    # ---- the loop

    def watch(self, *, poll: float = 1.0, once: bool = False,
              report: Callable[[WatchCounts], None] | None = None,
              report_error: Callable[[str], None] | None = None,
              should_stop: Callable[[], bool] | None = None) -> WatchCounts:
        """Until stopped (or, with once, until the inbox is empty and nothing runs)."""
        with self.locked():
            while True:
                try:
                    in_flight = self.step()
                except CorralError as exc:
                    if exc.status_code < 500:
                        raise
                    if report_error is not None:  # the server is away (restarting?): keep trying
                        report_error(exc.message)
                    in_flight = 1
                except OSError as exc:
                    raise InvalidInput(f"dir: {exc.strerror or exc} ({exc.filename})", field="dir") from None
                if report is not None:
                    report(self.counts)
                if once and in_flight == 0 and not self.inbox():
                    return self.counts
                if should_stop is not None and should_stop():
                    return self.counts
                time.sleep(poll)
