"""The interface every runtime implements: run one job's main command, given its io dir and limits."""

from __future__ import annotations

import asyncio
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar, Literal

from corral.errors import CorralError
from corral.runtimes.identity import JobUser

MainState = Literal["succeeded", "failed", "error", "cancelled"]
UsageSink = Callable[[float, float, int], None]  # (time, cumulative cpu seconds, memory bytes now)
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


class RuntimeUnavailable(CorralError):
    """The runtime cannot work on this machine; the message says what to install or change."""


@dataclass(frozen=True)
class MainRequest:
    """One attempt's main step. Paths the job sees are under /io; `io_dir` is where /io lives on the host."""

    key: str
    command: list[str]
    io_dir: Path
    scratch: Path  # the attempt's private directory (io_dir and tmp_dir live in it)
    tmp_dir: Path  # the job's /tmp
    log_path: Path
    env: dict[str, str] = field(default_factory=dict)
    image: str | None = None
    network: str | None = None  # None | "none" | "private" | "public"
    cores_mcpu: int = 1000
    memory_bytes: int = 0  # 0: no limit
    storage_bytes: int = 0
    timeout: float | None = None
    devices: tuple[str, ...] = ()  # device nodes the job may use (its GPUs' /dev/nvidiaN …)
    # A service's ports: on a private network, the instance's same ports are forwarded to the job's.
    published_ports: tuple[int, ...] = ()
    usage_sink: UsageSink | None = field(default=None, compare=False, repr=False)  # samples while it runs


@dataclass
class MainResult:
    state: MainState
    start: float
    end: float
    exit_code: int | None = None
    error: str | None = None
    out_of_memory: bool = False
    timed_out: bool = False
    max_memory_bytes: int = 0
    cpu_seconds: float = 0.0
    note: str | None = None  # something the user should know, e.g. an ignored image


class Runtime(ABC):
    """Runs main commands. Created once per worker; `start` checks the machine and fails clearly."""

    name: ClassVar[str]
    # False: jobs need no scratch dir, file copies or logs (the noop runtime measures the scheduler only).
    uses_scratch: ClassVar[bool] = True
    # True: every job runs as the worker's own user, so an ended attempt's clean scratch tree may serve the
    # next attempt (worker/scratch_pool.py).
    reuses_scratch: ClassVar[bool] = False
    # True: a job's start and end cost the worker far less than an events round trip to the driver (no
    # sandbox to set up), so the worker takes jobs beyond its free cores, held until cores free
    # (worker/admission.py, driver/lookahead.py): its cores do not idle for a round trip between jobs.
    quick_starts: ClassVar[bool] = False

    def __init__(self, *, instance_name: str, work_dir: Path) -> None:
        self.instance_name = instance_name
        self.work_dir = work_dir

    async def start(self) -> None:  # noqa: B027 - optional hook
        """Check prerequisites (raise RuntimeUnavailable) and prepare shared state."""

    async def close(self) -> None:  # noqa: B027 - optional hook
        """Release what `start` prepared."""

    def job_user(self, key: str) -> JobUser | None:
        """Hold the host identity the attempt's job runs as (None: the worker's own); `release_job_user`."""
        return None

    def release_job_user(self, key: str) -> None:  # noqa: B027 - optional hook
        """Let go of `job_user(key)`."""

    async def prepare_io(self, volume: Path, storage_bytes: int) -> None:  # noqa: B027 - optional hook
        """Before the input step: make `volume` (where /io and /tmp go) hold `storage_bytes`; OSError."""

    async def release_io(self, volume: Path) -> None:  # noqa: B027 - optional hook
        """After the output step: undo `prepare_io`."""

    def network_of(self, mode: str | None) -> str:
        """How a job asking for network `mode` is connected here: "host" (the instance's own network),
        "nat" (a private namespace: a service's ports are published through `published_ports`) or "none"."""
        return "host"

    @abstractmethod
    async def run(self, request: MainRequest, cancel: asyncio.Event) -> MainResult:
        """Run the command to completion, or until `cancel` is set (then kill it: state 'cancelled').

        Never raises for a job's own failure: the result says what happened.
        """


def job_environment(request: MainRequest) -> dict[str, str]:
    """What the job's process sees: a clean base (no worker secrets) plus the job's own env."""
    env = {
        "PATH": DEFAULT_PATH,
        "HOME": "/tmp",
        "TMPDIR": "/tmp",
        "LANG": "C.UTF-8",
        "SHLVL": "1",  # with stdin not a socket, bash skips rc files anyway; this keeps it so
    }
    # `nproc`, OpenMP and BLAS size their thread pools by it: the job's cores, not the machine's.
    env["OMP_NUM_THREADS"] = str(max(1, -(-request.cores_mcpu // 1000)))
    env.update(request.env)
    for leaky in ("BASH_ENV", "ENV"):
        if leaky not in request.env:
            env.pop(leaky, None)
    return env


def without_rc_files(command: list[str]) -> list[str]:
    """`bash -c ...` -> `bash --noprofile --norc -c ...`: rc files (e.g. pyenv init) cost ~100 ms a job."""
    if command and command[0].rsplit("/", 1)[-1] == "bash" and "--norc" not in command[1:2]:
        return [command[0], "--noprofile", "--norc", *command[1:]]
    return command


def now() -> float:
    return time.time()
