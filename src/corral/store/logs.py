"""Where job logs live on disk: one file per attempt and step. The only place that knows the scheme.

`{log_dir}/{batch_id}/{job_id}.{attempt_id}.{step}.log`: one new inode per log. The scheme before
(`{batch_id}/{job_id}/{attempt_id}/{step}.log`) made two directories for every attempt as well, which on
ext4 cost the server more than the rest of storing a short job's completion; logs written that way are
still read where they are (`existing_log_path`)."""

from __future__ import annotations

from pathlib import Path

STEPS: tuple[str, ...] = ("input", "main", "output")


def log_path(log_dir: Path, batch_id: int, job_id: int, attempt_id: int, step: str) -> Path:
    """Where a log is written: `{log_dir}/{batch_id}/{job_id}.{attempt_id}.{step}.log`."""
    return Path(log_dir) / str(batch_id) / f"{job_id}.{attempt_id}.{step}.log"


def legacy_log_path(log_dir: Path, batch_id: int, job_id: int, attempt_id: int, step: str) -> Path:
    """Where a server before the flat scheme wrote it: `{batch_id}/{job_id}/{attempt_id}/{step}.log`."""
    return Path(log_dir) / str(batch_id) / str(job_id) / str(attempt_id) / f"{step}.log"


def existing_log_path(log_dir: Path, batch_id: int, job_id: int, attempt_id: int, step: str) -> Path:
    """Where a log is to be read: the flat scheme's file, else an older server's, else (neither exists)
    the flat one. Blocking (a stat or two)."""
    path = log_path(log_dir, batch_id, job_id, attempt_id, step)
    if path.exists():
        return path
    legacy = legacy_log_path(log_dir, batch_id, job_id, attempt_id, step)
    return legacy if legacy.exists() else path


def read_attempt_logs(log_dir: Path, batch_id: int, job_id: int, attempt_id: int) -> dict[str, str]:
    """The logs of one attempt by step; steps without a log are left out. Blocking: run in a thread."""
    logs: dict[str, str] = {}
    for step in STEPS:
        path = existing_log_path(log_dir, batch_id, job_id, attempt_id, step)
        try:
            logs[step] = path.read_text(errors="replace")
        except FileNotFoundError:
            continue
    return logs


def read_latest_logs(
    log_dir: Path, batch_id: int, job_id: int, attempt_ids: list[int]
) -> tuple[int | None, dict[str, str]]:
    """Logs of the newest attempt (of `attempt_ids`, any order) that has any. Blocking: run in a thread."""
    for attempt_id in sorted(attempt_ids, reverse=True):
        logs = read_attempt_logs(log_dir, batch_id, job_id, attempt_id)
        if logs:
            return attempt_id, logs
    return None, {}
