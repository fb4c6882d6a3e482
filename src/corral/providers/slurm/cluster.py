"""One link per SLURM cluster, shared by every collection that uses it: one runner (one SSH connection and
tunnel), and one `squeue` answer shared by all of them, so the driver asks once per tick however many
collections and jobs there are."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from corral.providers.slurm.commands import QueuedJob, SlurmCommands
from corral.providers.slurm.options import SlurmOptions
from corral.providers.slurm.runners import CommandRunner, LocalRunner, SshRunner


@dataclass
class QueueSnapshot:
    jobs: list[QueuedJob]
    taken: float  # time.monotonic() when squeue was started: jobs submitted later may be missing


@dataclass
class ClusterLink:
    key: tuple[object, ...]
    commands: SlurmCommands
    users: int = 0
    _latest: QueueSnapshot | None = None
    _inflight: asyncio.Future[QueueSnapshot] | None = None

    @property
    def runner(self) -> CommandRunner:
        return self.commands.runner

    async def snapshot(self, max_age: float) -> QueueSnapshot:
        """The queue as of at most `max_age` seconds ago; callers arriving while a squeue runs share it."""
        latest = self._latest
        if latest is not None and time.monotonic() - latest.taken <= max_age:
            return latest
        if self._inflight is not None:
            return await asyncio.shield(self._inflight)
        future: asyncio.Future[QueueSnapshot] = asyncio.get_running_loop().create_future()
        self._inflight = future
        try:
            taken = time.monotonic()
            snap = QueueSnapshot(await self.commands.queue(), taken)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: callers sharing it get it raised
            raise
        finally:
            self._inflight = None
        self._latest = snap
        future.set_result(snap)
        return snap


_links: dict[tuple[object, ...], ClusterLink] = {}


def make_runner(options: SlurmOptions) -> CommandRunner:
    """Local subprocesses, or one SSH connection to the login node."""
    return SshRunner(options.ssh, options.env) if options.ssh else LocalRunner(options.env)


def _key(options: SlurmOptions) -> tuple[object, ...]:
    ssh = options.ssh.model_dump_json() if options.ssh else None
    return (ssh, tuple(sorted(options.env.items())), options.history)


def acquire(options: SlurmOptions, runner: CommandRunner | None = None) -> ClusterLink:
    """The shared link for these options (a runner given explicitly makes a private link, for tests)."""
    if runner is not None:
        private = ClusterLink(("private", id(runner)), SlurmCommands(
            runner, history=options.history, timeout=options.command_timeout))
        private.users = 1
        return private
    key = _key(options)
    link = _links.get(key)
    if link is None:
        commands = SlurmCommands(
            make_runner(options), history=options.history, timeout=options.command_timeout)
        link = ClusterLink(key, commands)
        _links[key] = link
    link.users += 1
    return link


async def release(link: ClusterLink) -> None:
    link.users -= 1
    if link.users <= 0:
        if _links.get(link.key) is link:
            del _links[link.key]
        await link.runner.close()
