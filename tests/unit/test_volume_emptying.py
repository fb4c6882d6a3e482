"""A returned default-storage volume is emptied inline when its job left only empty directories, and
handed to the thread's full removal otherwise (runtimes/default_storage.py)."""

from __future__ import annotations

from pathlib import Path

from corral.runtimes.default_storage import _emptied_inline, _empty


def test_empty_io_and_tmp_are_removed_inline(tmp_path: Path) -> None:
    (tmp_path / "io").mkdir()
    (tmp_path / "tmp").mkdir()
    assert _emptied_inline(tmp_path) is True
    assert list(tmp_path.iterdir()) == []


def test_files_left_are_not_inline_work_and_the_full_removal_takes_them(tmp_path: Path) -> None:
    (tmp_path / "io").mkdir()
    (tmp_path / "io" / "result.txt").write_text("kept until emptied")
    (tmp_path / "tmp").mkdir()
    (tmp_path / "link").symlink_to("/etc")
    assert _emptied_inline(tmp_path) is False
    assert (tmp_path / "io" / "result.txt").exists()
    _empty(tmp_path)
    assert list(tmp_path.iterdir()) == []
    assert Path("/etc").is_dir()  # the link went, not what it named


def test_many_entries_go_to_the_full_removal(tmp_path: Path) -> None:
    for i in range(6):
        (tmp_path / f"d{i}").mkdir()
    assert _emptied_inline(tmp_path) is False
    _empty(tmp_path)
    assert list(tmp_path.iterdir()) == []
