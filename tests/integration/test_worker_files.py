"""Copying inputs and outputs by URL (fsspec) between real directories."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from corral.files import TransferError, copy_in, copy_out
from corral.worker.protocol import FileSpec
from corral.worker.steps import copy_step


def test_copy_in_accepts_file_urls_and_plain_paths(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text("abc")
    assert copy_in(f"file://{src}", tmp_path / "io" / "x" / "a") == 3
    assert copy_in(str(src), tmp_path / "io" / "b") == 3
    assert (tmp_path / "io" / "x" / "a").read_text() == "abc"
    assert (tmp_path / "io" / "b").read_text() == "abc"


def test_copy_in_copies_directories(tmp_path: Path) -> None:
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "d" / "e" / "f").write_text("12345")
    assert copy_in(f"file://{tmp_path}/d", tmp_path / "io" / "d") == 5
    assert (tmp_path / "io" / "d" / "e" / "f").read_text() == "12345"


def test_copy_works_through_a_non_local_fsspec_filesystem(tmp_path: Path) -> None:
    src = tmp_path / "a.txt"
    src.write_text("via memory")
    copy_out(src, "memory://bucket/out/a.txt")
    copy_in("memory://bucket/out/a.txt", tmp_path / "back.txt")
    assert (tmp_path / "back.txt").read_text() == "via memory"


def test_missing_source_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(TransferError) as info:
        copy_in(f"file://{tmp_path}/missing", tmp_path / "x")
    assert f"{tmp_path}/missing" in info.value.message
    with pytest.raises(TransferError, match="no such file"):
        copy_out(tmp_path / "missing", f"file://{tmp_path}/y")


def test_copy_out_replaces_the_target_atomically(tmp_path: Path) -> None:
    (tmp_path / "o").write_text("new")
    (tmp_path / "dest").mkdir()
    (tmp_path / "dest" / "o").write_text("old")
    copy_out(tmp_path / "o", f"file://{tmp_path}/dest/o")
    assert (tmp_path / "dest" / "o").read_text() == "new"
    assert [p.name for p in (tmp_path / "dest").iterdir()] == ["o"]


async def test_an_input_path_outside_io_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    status = await copy_step(
        "input", [FileSpec(str(tmp_path / "a"), "/etc/passwd")], tmp_path / "io", tmp_path / "in.log",
        asyncio.Event(),
    )
    assert status.state == "error"
    assert status.error is not None and "/etc/passwd" in status.error
    assert "/etc/passwd" in (tmp_path / "in.log").read_text()


async def test_copy_step_stops_at_the_first_failure(tmp_path: Path) -> None:
    (tmp_path / "a").write_text("a")
    files = [FileSpec(str(tmp_path / "nope"), "/io/x"), FileSpec(str(tmp_path / "a"), "/io/a")]
    status = await copy_step("input", files, tmp_path / "io", tmp_path / "in.log", asyncio.Event())
    assert status.state == "error"
    assert not (tmp_path / "io" / "a").exists()
