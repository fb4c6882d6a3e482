"""Default storage volumes are reused across a stream of jobs (no mkfs, no fstrim per job), each job
finding its /io and /tmp empty (real loop-mounted ext4 volumes; root). That a volume is trimmed after a
job that wrote to it is tests/security/test_default_storage.py's."""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from tests.integration.runtime_support import request_builder, run

from corral.config import Settings
from corral.runtimes.base import MainRequest, MainResult
from corral.runtimes.config import JobsConfig
from corral.runtimes.process import ProcessRuntime
from corral.worker.layout import AttemptDirs

pytestmark = pytest.mark.skipif(
    os.environ.get("CI") != "true" and (os.geteuid() != 0 or shutil.which("bwrap") is None),
    reason="needs root (loop mounts, job cgroups) and bwrap",
)

SLOTS = 8  # more than KEEP_READY: the case where volumes were made and unmade per job


@pytest.fixture
async def rt(tmp_path: Path) -> AsyncIterator[ProcessRuntime]:
    """A root process runtime with pooled default storage of 64 MiB volumes."""
    settings = Settings(home=tmp_path / "home", jobs=JobsConfig(default_storage=64 * 1024 * 1024))
    name = f"test-{uuid.uuid4().hex[:8]}"
    runtime = ProcessRuntime(instance_name=name, work_dir=tmp_path / "wd", settings=settings)
    await runtime.start()
    assert runtime.default_volumes is not None
    yield runtime
    await runtime.close()


async def run_on_volume(rt: ProcessRuntime, req: MainRequest) -> tuple[MainResult, AttemptDirs]:
    """Run `req` as the worker lays out an attempt (worker/attempt.py): a volume lent from the pool, /io
    and /tmp in it, the request naming their real paths; the volume given back after."""
    dirs = AttemptDirs(req.scratch / "attempt")
    dirs.create()
    await rt.prepare_io(dirs.volume, 0)
    dirs.create_io()
    try:
        result = await run(rt, replace(req, io_dir=dirs.real(dirs.io), tmp_dir=dirs.real(dirs.tmp)))
    finally:
        await rt.release_io(dirs.volume)
    return result, dirs


async def test_a_stream_of_jobs_reuses_volumes_and_each_finds_them_empty(
    rt: ProcessRuntime, tmp_path: Path
) -> None:
    make = request_builder(tmp_path)
    assert rt.default_volumes is not None
    slots = asyncio.Semaphore(SLOTS)

    async def job(i: int) -> str:
        async with slots:
            script = f"ls -A /io /tmp | grep -v ':$' | grep . ; echo {i} > /io/mine; echo {i} > /tmp/mine"
            req = make(script)
            result, _ = await run_on_volume(rt, req)
            assert result.state in ("succeeded", "failed"), req.log_path.read_text()
            return req.log_path.read_text()

    logs = await asyncio.gather(*(job(i) for i in range(8 * SLOTS)))
    assert all(log.strip() == "" for log in logs), logs  # nothing of an earlier job was left
    # Volumes are reused, not made per job (a loose bound: under load more spares are made while the
    # first jobs start; quiet, ~SLOTS + 1 are made, where the pool used to make ~20 for these jobs).
    assert rt.default_volumes.made <= 3 * SLOTS, rt.default_volumes.made
    # Jobs that leave nothing on the host's disk cost no fstrim each (a volume is trimmed when its
    # loop file grew: at least once when new, as its first job's writes may have reached it).
    assert rt.default_volumes.trims < 8 * SLOTS, rt.default_volumes.trims


async def test_waves_of_jobs_with_a_gap_between_them_reuse_the_last_waves_volumes(
    rt: ProcessRuntime, tmp_path: Path
) -> None:
    """A worker's slots end and start in waves (a round trip to the driver between a job's end and the
    next one's start, when fewer volumes are lent): the pool keeps as many as were lent at once, so a
    wave makes no volume; and jobs that write nothing cost no fstrim, new volumes included."""
    make = request_builder(tmp_path)
    assert rt.default_volumes is not None

    async def job() -> None:
        req = make("ls -A /io /tmp | grep -v ':$' | grep . ; true")
        result, dirs = await run_on_volume(rt, req)
        assert not dirs.volume.exists() and not dirs.volume.is_symlink()  # given back: nothing left to sweep
        left = req.log_path.read_text()
        assert result.state == "succeeded" and left.strip() == "", left

    for _wave in range(6):
        await asyncio.gather(*(job() for _ in range(SLOTS)))
        await rt.default_volumes.settle()  # every volume is back and emptied before the next wave asks
    # The first wave makes SLOTS and a spare or two (more under load); the pool used to unmake all
    # but KEEP_READY after each wave and make the rest again for the next (~4 per wave here).
    assert rt.default_volumes.made <= SLOTS + 4, rt.default_volumes.made
    assert rt.default_volumes.trims == 0, rt.default_volumes.trims
