"""Ended attempts' scratch leaves the jobs dir with one rename and is deleted in batches in the
background; what a killed worker had not deleted yet is found by the cleanup of the next worker."""

from __future__ import annotations

import asyncio
import fcntl
import os
from pathlib import Path

import pytest

from corral.worker import sweeper as sweeper_module
from corral.worker.cleanup import LOCK, claim, clean_dead_siblings
from corral.worker.layout import ScratchLayout
from corral.worker.sweeper import ScratchSweeper


def _ended_attempts(layout: ScratchLayout, n: int) -> list[Path]:
    roots = []
    for i in range(n):
        dirs = layout.attempt(f"1.{i + 1}.1")
        dirs.create()
        dirs.create_io()
        (dirs.io / "out.txt").write_text("x" * 1000)
        (dirs.log("main")).write_text("log")
        roots.append(dirs.root)
    return roots


async def test_ended_attempts_leave_the_jobs_dir_at_once_and_are_deleted_in_one_batch(tmp_path: Path) -> None:
    layout = ScratchLayout(tmp_path / "work")
    layout.prepare()
    sweeper = ScratchSweeper(layout.trash, window=0.2)
    sweeping = asyncio.create_task(sweeper.run())
    try:
        roots = _ended_attempts(layout, 20)
        for root in roots:
            sweeper.discard(root)
        assert not any(root.exists() for root in roots)  # gone from jobs/ before any deletion ran
        assert list(layout.jobs.iterdir()) == []
        assert len(list(layout.trash.iterdir())) == 20
        for _ in range(600):  # up to a minute on a loaded machine
            if sweeper.removed == 20:
                break
            await asyncio.sleep(0.1)
        assert sweeper.removed == 20 and list(layout.trash.iterdir()) == []
        assert sweeper.sweeps == 1  # discarded together, deleted together (one `rm`, not 20)
        sweeper.discard(layout.attempt("9.9.9").root)  # never created: nothing to do, no error
        assert len(sweeper) == 0
    finally:
        sweeping.cancel()
        await asyncio.gather(sweeping, return_exceptions=True)
    # Flushed at the worker's end: nothing is left behind by a clean stop.
    for root in _ended_attempts(layout, 3):
        sweeper.discard(root)
    await sweeper.flush()
    assert list(layout.trash.iterdir()) == [] and list(layout.jobs.iterdir()) == []


def test_a_crashed_workers_trash_is_removed_by_the_next_worker_on_its_dir(tmp_path: Path) -> None:
    layout = ScratchLayout(tmp_path / "work")
    layout.prepare()
    sweeper = ScratchSweeper(layout.trash)
    for root in _ended_attempts(layout, 3):
        sweeper.discard(root)  # the worker dies before its sweeper ran
    _ended_attempts(layout, 2)  # ... and with attempts still running
    assert len(list(layout.trash.iterdir())) == 3
    ScratchLayout(tmp_path / "work").prepare()  # the same worker restarted
    assert list(layout.trash.iterdir()) == [] and list(layout.jobs.iterdir()) == []


def test_a_dead_siblings_trash_goes_with_its_work_dir(tmp_path: Path) -> None:
    dead = ScratchLayout(tmp_path / "workers" / "dead")
    dead.prepare()
    fd = claim(dead.work_dir)
    sweeper = ScratchSweeper(dead.trash)
    for root in _ended_attempts(dead, 3):
        sweeper.discard(root)
    alive = tmp_path / "workers" / "alive"
    fd_alive = claim(alive)
    try:
        assert clean_dead_siblings(alive) == []  # its owner still holds the lock: left alone
        assert len(list(dead.trash.iterdir())) == 3
        os.close(fd)  # the dead worker's lock is released as the kernel closes its files
        assert clean_dead_siblings(alive) == ["dead"]
        assert not dead.work_dir.exists()
    finally:
        fcntl.flock(fd_alive, fcntl.LOCK_UN)
        os.close(fd_alive)
    assert (alive / LOCK).exists()


@pytest.mark.parametrize("rm", ["rm", None], ids=["rm", "no-rm"])
async def test_a_batch_is_deleted_whole_over_several_rm_commands_or_without_rm(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, rm: str | None
) -> None:
    """More ended attempts than one `rm` command line takes, an odd name, nested dirs: all of it goes;
    where no `rm` is found, a thread deletes it."""
    monkeypatch.setattr(sweeper_module, "ARGS_AT_ONCE", 3)
    if rm is None:
        monkeypatch.setattr(sweeper_module, "RM", None)
    layout = ScratchLayout(tmp_path / "work")
    layout.prepare()
    sweeper = ScratchSweeper(layout.trash)
    roots = _ended_attempts(layout, 8)
    odd = layout.jobs / "-rf x y"  # a name rm must not read as options, with spaces
    (odd / "deep" / "er").mkdir(parents=True)
    (odd / "deep" / "er" / "f").write_text("x")
    for root in [*roots, odd]:
        sweeper.discard(root)
    await sweeper.flush()
    assert sweeper.removed == 9 and list(layout.trash.iterdir()) == []
