"""Instance preparation for SSH-reached providers (ssh pools, rented vast.ai hosts): the collection's
`prepare` section, run once per instance before it takes jobs.

    [instance_collections.prepare]
    python = ">=3.10"                  # checks ...
    import_torch = true
    cuda = true                        # torch.cuda.is_available()
    min_free_disk = "20Gi"             # in the worker's directory
    commands = ["nvidia-smi -L"]       # each must exit 0
    requirements = "requirements.txt"  # setup ...: uploaded, then `python -m pip install -r`
    git = { url = "https://github.com/me/code", commit = "4f2a…", dest = "code" }
    copy = [{ source = "data/vocab.txt", dest = "code/vocab.txt" }]

Checks run first (nothing is changed on a host that fails one), then the setup steps in the order above.
Every step is logged and reported (name, ok, seconds, the end of its output); the report is kept in the
instance's metadata, and the first failure is the reason the instance is unusable.
"""

from __future__ import annotations

import logging
import re
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncssh
from pydantic import BaseModel, ConfigDict, Field, field_validator

from corral.domain.resources import parse_bytes
from corral.errors import CorralError

log = logging.getLogger("corral.providers.prepare")

_VERSION_SPEC = re.compile(r"^(>=|<=|==|>|<)?\s*(\d+(?:\.\d+){0,2})$")


class GitCheckout(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1)
    commit: str = Field(min_length=4, pattern=r"^[0-9A-Za-z._/-]+$")
    dest: str = "code"


class CopyFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(min_length=1)  # a file on the server's machine
    dest: str = Field(min_length=1)  # relative to the worker's directory unless absolute


class PrepareConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    python: str | None = None  # a version requirement: ">=3.10", "==3.11"
    python_path: str = "python3"  # the interpreter checks and pip use
    import_torch: bool = False
    cuda: bool = False
    min_free_disk: str | None = None
    commands: list[str] = Field(default_factory=list)
    requirements: str | None = None
    git: GitCheckout | None = None
    copy_files: list[CopyFile] = Field(default_factory=list, alias="copy")
    timeout: float = Field(default=900.0, gt=0)  # per step

    @field_validator("python")
    @classmethod
    def _version_spec(cls, value: str | None) -> str | None:
        if value is not None and not _VERSION_SPEC.match(value.strip()):
            raise ValueError(f"{value!r} is not a version requirement such as '>=3.10'")
        return value

    @field_validator("min_free_disk")
    @classmethod
    def _disk(cls, value: str | None) -> str | None:
        if value is not None:
            parse_bytes(value, field="prepare.min_free_disk")
        return value


@dataclass
class StepResult:
    name: str
    ok: bool
    seconds: float
    detail: str = ""


@dataclass
class PrepareReport:
    ok: bool = True
    steps: list[StepResult] = field(default_factory=list)
    reason: str | None = None
    time: float = field(default_factory=time.time)

    def as_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "reason": self.reason,
            "time": self.time,
            "steps": [asdict(s) for s in self.steps],
        }


class PreparationFailed(CorralError):
    """A check or setup step failed; `metadata` is kept on the instance so users see why."""

    def __init__(self, message: str, report: PrepareReport) -> None:
        super().__init__(message)
        self.metadata: dict[str, Any] = {"prepare": report.as_dict()}


def version_ok(found: str, spec: str) -> bool:
    """'3.11.2' against '>=3.10'; a bare version means ==, compared on the parts the spec gives."""
    match = _VERSION_SPEC.match(spec.strip())
    if match is None:
        return False
    op, want = match.group(1) or "==", tuple(int(p) for p in match.group(2).split("."))
    have = tuple(int(p) for p in found.split(".")[: len(want)] if p.isdigit())
    return {">=": have >= want, "<=": have <= want, "==": have == want, ">": have > want, "<": have < want}[
        op
    ]


def plan(config: PrepareConfig, work_dir: str) -> list[tuple[str, str, str]]:
    """(step name, kind, shell command) in order; kind is check or setup. Pure."""
    py = shlex.quote(config.python_path)
    steps: list[tuple[str, str, str]] = []
    if config.python:
        steps.append(
            (
                f"python {config.python}",
                "check",
                f"{py} -c 'import sys; print(\"%d.%d.%d\" % sys.version_info[:3])'",
            )
        )
    if config.import_torch or config.cuda:
        steps.append(("import torch", "check", f"{py} -c 'import torch; print(torch.__version__)'"))
    if config.cuda:
        steps.append(
            (
                "CUDA available",
                "check",
                f"{py} -c 'import sys, torch; n = torch.cuda.device_count() if torch.cuda.is_available() "
                f'else 0; print(n, "devices"); sys.exit(0 if n else 1)\'',
            )
        )
    if config.min_free_disk:
        need = parse_bytes(config.min_free_disk, field="prepare.min_free_disk")
        steps.append(
            (
                f"free disk >= {config.min_free_disk}",
                "check",
                f"mkdir -p {shlex.quote(work_dir)} && kb=$(df -Pk {shlex.quote(work_dir)} | "
                f"awk 'NR==2 {{print $4}}') && avail=$((kb * 1024)) && echo \"$avail bytes free\" && "
                f'[ "$avail" -ge {need} ]',
            )
        )
    for command in config.commands:
        steps.append((f"command: {command}", "check", command))
    if config.requirements:
        remote = f"{work_dir}/prepare/requirements.txt"
        steps.append(
            (
                f"pip install -r {config.requirements}",
                "setup",
                f"{py} -m pip install -q --disable-pip-version-check -r {shlex.quote(remote)}",
            )
        )
    if config.git:
        dest = _remote_path(config.git.dest, work_dir)
        url, commit = shlex.quote(config.git.url), shlex.quote(config.git.commit)
        d = shlex.quote(dest)
        steps.append(
            (
                f"git clone {config.git.url} at {config.git.commit}",
                "setup",
                f"if [ ! -d {d}/.git ]; then git clone -q {url} {d}; fi && "
                f"(git -C {d} checkout -q {commit} 2>/dev/null || "
                f"(git -C {d} fetch -q origin && git -C {d} checkout -q {commit})) && "
                f"git -C {d} rev-parse HEAD",
            )
        )
    return steps


def _remote_path(path: str, work_dir: str) -> str:
    return path if path.startswith("/") else f"{work_dir}/{path}"


async def run_preparation(
    conn: asyncssh.SSHClientConnection, config: PrepareConfig, *, work_dir: str, host: str
) -> PrepareReport:
    """Run the checks and setup steps on the host; never raises for a failed step (see the report)."""
    report = PrepareReport()

    async def run(name: str, command: str) -> bool:
        started = time.monotonic()
        try:
            result = await conn.run(command, timeout=config.timeout)
            output = f"{result.stdout or ''!s}{result.stderr or ''!s}".strip()
            ok = result.exit_status == 0
        except asyncssh.TimeoutError:
            ok, output = False, f"timed out after {config.timeout:.0f}s"
        except (OSError, asyncssh.Error) as exc:
            ok, output = False, f"{type(exc).__name__}: {exc}"
        if ok and name.startswith("python ") and config.python:
            found = output.strip().splitlines()[-1] if output.strip() else ""
            ok = version_ok(found, config.python)
            output = f"python {found}" + ("" if ok else f" does not satisfy {config.python}")
        step = StepResult(name, ok, round(time.monotonic() - started, 3), output[-800:])
        report.steps.append(step)
        log.info(
            "prepare %s: %s: %s in %.1fs%s",
            host,
            name,
            "ok" if ok else "FAILED",
            step.seconds,
            "" if ok else f": {output[-300:]}",
        )
        if not ok:
            report.ok = False
            report.reason = f"preparation step {name!r} failed on {host}: {output[-300:] or 'no output'}"
        return ok

    steps = plan(config, work_dir)
    for name, kind, command in steps:
        if kind == "check" and not await run(name, command):
            return report
    if config.requirements and not await copy(
        conn, [(config.requirements, f"{work_dir}/prepare/requirements.txt")], report, host, config.timeout
    ):
        return report
    for name, kind, command in steps:
        if kind == "setup" and not await run(name, command):
            return report
    copies = [(c.source, _remote_path(c.dest, work_dir)) for c in config.copy_files]
    if copies:  # last: into what the clone made
        await copy(conn, copies, report, host, config.timeout)
    return report


async def copy(
    conn: asyncssh.SSHClientConnection, files: list[tuple[str, str]], report: PrepareReport, host: str,
    timeout: float,
) -> bool:
    """Upload (source, dest) files over SFTP as one reported step."""
    started = time.monotonic()
    try:
        async with conn.start_sftp_client() as sftp:
            for source, dest in files:
                parent = dest.rsplit("/", 1)[0]
                await conn.run(f"mkdir -p {shlex.quote(parent)}", check=True, timeout=timeout)
                await sftp.put(str(Path(source).expanduser()), dest)
    except (OSError, asyncssh.Error) as exc:
        report.ok = False
        report.reason = f"copying files to {host} failed: {exc}"
        report.steps.append(StepResult("copy files", False, round(time.monotonic() - started, 3), str(exc)))
        return False
    names = ", ".join(s for s, _ in files)
    report.steps.append(StepResult(f"copy {names}", True, round(time.monotonic() - started, 3)))
    return True


async def prepare_or_raise(
    conn: asyncssh.SSHClientConnection, config: PrepareConfig | None, *, work_dir: str, host: str
) -> dict[str, Any]:
    """The report as metadata; PreparationFailed (carrying the report) when a step failed."""
    if config is None:
        return {}
    report = await run_preparation(conn, config, work_dir=work_dir, host=host)
    if not report.ok:
        raise PreparationFailed(report.reason or f"preparation failed on {host}", report)
    return {"prepare": report.as_dict()}
