"""The SLURM commands Corral uses, with their machine-readable output parsed (`sbatch --parsable`,
`squeue -h -o`, `sacct -P`). Every call is one command, whatever the number of jobs it is about."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from corral.errors import CorralError
from corral.providers.slurm.runners import CommandResult, CommandRunner

FIELD_SEP = "|"
# %i job id, %T state, %r reason, %N nodes, %j name (last: the only field a user controls)
SQUEUE_FORMAT = FIELD_SEP.join(["%i", "%T", "%r", "%N", "%j"])
SACCT_FIELDS = "JobID,State,ExitCode,NodeList,End,JobName"
# scancel's answers for a job that is already over: cancelling it again is not an error.
_ALREADY_OVER = ("already completing or completed", "invalid job id", "job has already finished")


class SlurmCommandFailed(CorralError):
    """SLURM refused a request (bad partition, account, over a limit); the message is SLURM's."""

    status_code = 502


@dataclass(frozen=True)
class QueuedJob:
    """One line of `squeue`: a job SLURM still holds (pending, running, or just ending)."""

    job_id: str
    state: str
    reason: str
    nodes: str
    name: str


@dataclass(frozen=True)
class FinishedJob:
    """A job's final record from the completion log or accounting."""

    job_id: str
    state: str  # first word: "CANCELLED by 0" -> "CANCELLED"
    exit_code: str
    nodes: str
    end: str
    name: str


def parse_sbatch(stdout: str) -> str:
    """`sbatch --parsable` prints `jobid` or `jobid;cluster`."""
    for line in reversed(stdout.strip().splitlines()):
        job_id = line.split(";", 1)[0].strip()
        if job_id.isdigit():
            return job_id
    raise SlurmCommandFailed(f"sbatch did not print a job id: {stdout.strip()[-200:]!r}")


def parse_squeue(stdout: str) -> list[QueuedJob]:
    jobs = []
    for line in stdout.splitlines():
        parts = line.split(FIELD_SEP, 4)
        if len(parts) == 5 and parts[0].strip():
            job_id, state, reason, nodes, name = parts
            jobs.append(QueuedJob(job_id.strip(), state.strip(), reason.strip(), nodes.strip(), name))
    return jobs


def parse_sacct(stdout: str) -> dict[str, FinishedJob]:
    """Records by job id; a job requeued and ended again keeps its last record. Steps (`12.batch`) skipped."""
    found: dict[str, FinishedJob] = {}
    for line in stdout.splitlines():
        parts = line.split(FIELD_SEP, 5)
        if len(parts) != 6 or not parts[0].strip() or "." in parts[0]:
            continue
        job_id, state, exit_code, nodes, end, name = parts
        words = state.split()
        found[job_id.strip()] = FinishedJob(
            job_id.strip(), words[0] if words else "", exit_code.strip(), nodes.strip(), end.strip(), name
        )
    return found


class SlurmCommands:
    """sbatch / squeue / scancel / sacct through one runner (local or SSH)."""

    def __init__(
        self, runner: CommandRunner, *, history: Literal["completion_log", "accounting"] = "completion_log",
        timeout: float = 60.0,
    ) -> None:
        self.runner = runner
        self.history = history
        self.timeout = timeout

    async def _run(self, argv: Sequence[str], stdin: str | None = None) -> CommandResult:
        return await self.runner.run(argv, stdin=stdin, timeout=self.timeout)

    async def submit(self, script: str, args: Sequence[str]) -> str:
        """`sbatch --parsable ARGS` with the script on stdin (secrets in it never show in a command line)."""
        done = await self._run(["sbatch", "--parsable", *args], stdin=script)
        if not done.ok:
            raise SlurmCommandFailed(f"{done.describe()} (on {self.runner.where})")
        return parse_sbatch(done.stdout)

    async def queue(self) -> list[QueuedJob]:
        """All our jobs SLURM still holds, in ONE `squeue` call."""
        done = await self._run(["squeue", "--me", "--noheader", "--format", SQUEUE_FORMAT])
        if not done.ok:
            raise SlurmCommandFailed(f"{done.describe()} (on {self.runner.where})")
        return parse_squeue(done.stdout)

    async def cancel(self, job_ids: Sequence[str]) -> None:
        """`scancel`; a job already over counts as cancelled (idempotent)."""
        if not job_ids:
            return
        done = await self._run(["scancel", *job_ids])
        if not done.ok:
            lines = [ln for ln in done.stderr.lower().splitlines() if ln.strip()]
            if not lines or not all(any(m in ln for m in _ALREADY_OVER) for ln in lines):
                raise SlurmCommandFailed(f"{done.describe()} (on {self.runner.where})")

    async def finished(self, job_ids: Sequence[str]) -> dict[str, FinishedJob]:
        """Final records of jobs that left the queue, in ONE call: `sacct -c` reads the completion log
        (jobcomp/filetxt, when there is no accounting daemon), plain `sacct` asks slurmdbd."""
        if not job_ids:
            return {}
        argv = ["sacct", "--noheader", "--parsable2", "--format", SACCT_FIELDS, "--jobs", ",".join(job_ids)]
        if self.history == "completion_log":
            argv.insert(1, "--completion")
        else:
            argv.insert(1, "--allocations")
        done = await self._run(argv)
        if not done.ok:
            raise SlurmCommandFailed(f"{done.describe()} (on {self.runner.where})")
        return parse_sacct(done.stdout)
