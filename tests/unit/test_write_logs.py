"""The server's writes of the small logs a worker's completion carries (driver/worker_api.py): each log is
there whole or not at all, in its batch's directory, made when missing; nothing else is left beside it."""

from __future__ import annotations

import os
from pathlib import Path

from corral.driver.worker_api import _write_logs
from corral.store.logs import log_path, read_attempt_logs


def test_logs_land_whole_in_a_new_batch_directory(tmp_path: Path) -> None:
    main, empty = log_path(tmp_path, 7, 1, 1, "main"), log_path(tmp_path, 7, 2, 1, "main")
    _write_logs([(main, b"hello\n"), (empty, b"")])
    assert main.read_bytes() == b"hello\n"
    assert empty.read_bytes() == b"" and empty.is_file()
    assert sorted(p.name for p in (tmp_path / "7").iterdir()) == ["1.1.main.log", "2.1.main.log"]
    assert read_attempt_logs(tmp_path, 7, 2, 1) == {"main": ""}  # an empty log is a log, not none


def test_a_log_written_again_replaces_the_old_one_whatever_its_size(tmp_path: Path) -> None:
    path = log_path(tmp_path, 3, 1, 1, "main")
    _write_logs([(path, b"first, longer\n")])
    _write_logs([(path, b"2nd\n")])
    assert path.read_bytes() == b"2nd\n"
    _write_logs([(path, b"")])
    assert path.read_bytes() == b""
    _write_logs([(path, b"third\n")])
    assert path.read_bytes() == b"third\n"
    assert os.listdir(tmp_path / "3") == ["1.1.main.log"]


def test_an_empty_log_gets_the_mode_a_written_one_gets(tmp_path: Path) -> None:
    written, empty = log_path(tmp_path, 4, 1, 1, "main"), log_path(tmp_path, 4, 2, 1, "main")
    _write_logs([(written, b"x"), (empty, b"")])
    assert written.stat().st_mode == empty.stat().st_mode
