"""Where logs are written and read (store/logs.py): the flat scheme, and logs an older server wrote."""

from __future__ import annotations

from pathlib import Path

from corral.store.logs import existing_log_path, legacy_log_path, log_path, read_attempt_logs


def test_a_log_is_one_file_in_its_batchs_directory(tmp_path: Path) -> None:
    path = log_path(tmp_path, 7, 12, 3, "main")
    assert path == tmp_path / "7" / "12.3.main.log"
    assert existing_log_path(tmp_path, 7, 12, 3, "main") == path  # neither exists: where it will be


def test_logs_an_older_server_wrote_are_still_read(tmp_path: Path) -> None:
    old = legacy_log_path(tmp_path, 7, 12, 3, "main")
    old.parent.mkdir(parents=True)
    old.write_text("from before\n")
    assert old == tmp_path / "7" / "12" / "3" / "main.log"
    assert existing_log_path(tmp_path, 7, 12, 3, "main") == old
    assert read_attempt_logs(tmp_path, 7, 12, 3) == {"main": "from before\n"}
    assert read_attempt_logs(tmp_path, 7, 12, 4) == {}


def test_the_flat_file_wins_over_an_older_one(tmp_path: Path) -> None:
    old = legacy_log_path(tmp_path, 1, 1, 1, "main")
    old.parent.mkdir(parents=True)
    old.write_text("old\n")
    new = log_path(tmp_path, 1, 1, 1, "main")
    new.write_text("new\n")
    log_path(tmp_path, 1, 1, 1, "input").write_text("in\n")
    assert read_attempt_logs(tmp_path, 1, 1, 1) == {"input": "in\n", "main": "new\n"}
