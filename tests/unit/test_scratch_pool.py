"""Reused scratch trees (worker/scratch_pool.py) on a real file system: only clean ones, emptied, reset."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from corral.worker.layout import AttemptDirs, ScratchLayout
from corral.worker.scratch_pool import ScratchPool, new_dir_mode


def _attempt(layout: ScratchLayout, key: str, log: bytes = b"") -> AttemptDirs:
    dirs = layout.attempt(key)
    dirs.create()
    dirs.volume.mkdir()
    dirs.create_io()
    dirs.log("main").write_bytes(log)
    return dirs


@pytest.fixture
def layout(tmp_path: Path) -> ScratchLayout:
    layout = ScratchLayout(tmp_path / "work")
    layout.prepare()
    return layout


def test_a_clean_tree_is_emptied_kept_and_serves_the_next_attempt(layout: ScratchLayout) -> None:
    pool = ScratchPool(layout.idle)
    first = _attempt(layout, "1.1.1", log=b"the first job's output\n")
    first.log("input").write_bytes(b"copied\n")
    io_inode = first.io.stat().st_ino
    assert pool.give_back(first)
    assert not first.root.exists() and len(pool.idle) == 1
    second = layout.attempt("1.2.1")
    assert pool.take(second) and pool.reused == 1 and not pool.idle
    assert second.io.stat().st_ino == io_inode  # the same directory, renamed: no inode made or freed
    assert sorted(p.name for p in second.root.iterdir()) == ["input.log", "main.log", "vol"]
    assert second.log("main").read_bytes() == b"" and second.log("input").read_bytes() == b""
    assert list(second.io.iterdir()) == [] and list(second.tmp.iterdir()) == []
    assert not pool.take(layout.attempt("1.3.1"))  # none idle: the attempt makes its own


@pytest.mark.parametrize("leftover", ["file in io", "file in tmp", "dir in io", "hidden file in tmp",
                                      "file in root", "dir in root", "file in vol", "symlink vol",
                                      "no vol", "log is a dir"])
def test_a_tree_holding_anything_of_its_job_is_not_kept(layout: ScratchLayout, leftover: str) -> None:
    dirs = _attempt(layout, "2.1.1", log=b"kept as it is\n")
    make: dict[str, Callable[[], object]] = {
        "file in io": lambda: (dirs.io / "out.txt").write_text("x"),
        "file in tmp": lambda: (dirs.tmp / "scratch").write_text("x"),
        "dir in io": lambda: (dirs.io / "sub").mkdir(),
        "hidden file in tmp": lambda: (dirs.tmp / ".x").write_text("x"),
        "file in root": lambda: (dirs.root / "core").write_text("x"),
        "dir in root": lambda: (dirs.root / "extra").mkdir(),
        "file in vol": lambda: (dirs.volume / "x").write_text("x"),
        "symlink vol": lambda: (shutil.move(dirs.volume, dirs.root / "real"),
                                dirs.volume.symlink_to(dirs.root / "real")),
        "no vol": lambda: shutil.rmtree(dirs.volume),
        "log is a dir": lambda: (dirs.log("main").unlink(), dirs.log("main").mkdir()),
    }
    make[leftover]()
    before = sorted(str(p.relative_to(dirs.root)) for p in dirs.root.rglob("*"))
    pool = ScratchPool(layout.idle)
    assert not pool.give_back(dirs) and not pool.idle
    assert sorted(str(p.relative_to(dirs.root)) for p in dirs.root.rglob("*")) == before  # untouched
    if dirs.log("main").is_file():
        assert dirs.log("main").read_bytes() == b"kept as it is\n"


@pytest.mark.skipif(os.geteuid() != 0 and os.environ.get("CI") != "true", reason="mounting needs root")
def test_a_tree_with_a_volume_still_mounted_is_not_kept(layout: ScratchLayout) -> None:
    dirs = _attempt(layout, "3.1.1")
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(dirs.volume)], check=True)
    try:
        (dirs.volume / "io").mkdir()
        (dirs.volume / "tmp").mkdir()
        assert not ScratchPool(layout.idle).give_back(dirs)
        assert dirs.root.exists()
    finally:
        subprocess.run(["umount", str(dirs.volume)], check=True)


def test_modes_a_job_changed_are_reset(layout: ScratchLayout) -> None:
    pool = ScratchPool(layout.idle)
    dirs = _attempt(layout, "4.1.1")
    dirs.io.chmod(0o000)
    dirs.tmp.chmod(0o1777)
    assert pool.give_back(dirs)
    nxt = layout.attempt("4.2.1")
    assert pool.take(nxt)
    for d in (nxt.io, nxt.tmp):
        assert d.stat().st_mode & 0o7777 == new_dir_mode()


def test_at_most_keep_trees_are_kept_and_drain_hands_them_all_over(layout: ScratchLayout) -> None:
    pool = ScratchPool(layout.idle, keep=2)
    kept = [pool.give_back(_attempt(layout, f"5.{i}.1")) for i in range(1, 4)]
    assert kept == [True, True, False]
    drained = pool.drain()
    assert len(drained) == 2 and all(p.parent == layout.idle and p.is_dir() for p in drained)
    assert not pool.idle and not pool.take(layout.attempt("5.9.1"))


def test_the_workers_start_clears_idle_trees(layout: ScratchLayout) -> None:
    assert ScratchPool(layout.idle).give_back(_attempt(layout, "6.1.1"))
    assert list(layout.idle.iterdir())
    layout.prepare()  # a restarted worker: what its predecessor kept is gone
    assert list(layout.idle.iterdir()) == []
