"""Reading a v1 memory cgroup's OOM kills (runtimes/cgroups.py), kernels before and after Linux 4.13.

The kernels here have the oom_kill count (tests/integration/test_cgroup_reuse.py checks it for real);
these files stand for an older kernel's, which has only the fail count, and for one that cannot be read."""

from __future__ import annotations

from pathlib import Path

from corral.runtimes.cgroups import _v1_oom_kills


def _memory(tmp_path: Path, control: str, failcnt: str | None) -> Path:
    (tmp_path / "memory.oom_control").write_text(control)
    if failcnt is not None:
        (tmp_path / "memory.failcnt").write_text(failcnt)
    return tmp_path


def test_the_oom_kill_count_is_read_where_the_kernel_has_it(tmp_path: Path) -> None:
    mem = _memory(tmp_path, "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n", "7\n")
    assert _v1_oom_kills(mem) == 2  # the count, not the fail count


def test_before_linux_4_13_hitting_the_limit_counts_as_a_kill(tmp_path: Path) -> None:
    assert _v1_oom_kills(_memory(tmp_path, "oom_kill_disable 0\nunder_oom 0\n", "0\n")) == 0
    assert _v1_oom_kills(_memory(tmp_path, "oom_kill_disable 0\nunder_oom 0\n", "5\n")) == 1


def test_an_unreadable_fail_count_is_what_the_caller_says(tmp_path: Path) -> None:
    mem = _memory(tmp_path, "oom_kill_disable 0\nunder_oom 0\n", None)
    assert _v1_oom_kills(mem) == 0  # a job's result: no evidence of a kill
    assert _v1_oom_kills(mem, unknown=1) == 1  # reusing the cgroup: not without knowing
