"""Running the `corral` command in tests, as a user would, and checking that no traceback reaches them."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from typer.testing import CliRunner, Result

# Text that only a Python traceback (or frames of Corral's, Typer's or click's own code) would print.
TRACEBACK_MARKERS = ("Traceback", "typer/main.py", "_click/core.py", "corral/cli/", "corral/client/")


def assert_no_traceback(*outputs: str) -> None:
    """Nothing of a Python traceback in what the user saw."""
    for text in outputs:
        for marker in TRACEBACK_MARKERS:
            assert marker not in text, f"a traceback ({marker!r}) reached the user:\n{text}"


@dataclass
class CliResult:
    code: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def corral_env(home: Path | None = None, **extra: str) -> dict[str, str]:
    """The caller's environment without CORRAL_* settings (so a test names its own), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env["COLUMNS"] = "250"  # tables are not wrapped, so lines can be checked as text
    if home is not None:
        env["CORRAL_HOME"] = str(home)
    env.update(extra)
    return env


def run_corral(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path | None = None,
    timeout: float = 300,
    expect: int | None = None,
) -> CliResult:
    """`python -m corral ARGS` in a subprocess; asserts no traceback, and the exit code if `expect`."""
    done = subprocess.run(
        [sys.executable, "-m", "corral", *args],
        env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout,
    )
    result = CliResult(done.returncode, done.stdout, done.stderr)
    assert_no_traceback(result.stdout, result.stderr)
    if expect is not None:
        assert result.code == expect, f"exit {result.code}, expected {expect}:\n{result.output}"
    return result


def invoke(app: Any, args: Sequence[str], *, expect: int | None = None, **kwargs: Any) -> Result:
    """CliRunner.invoke that fails on any exception escaping the command (a traceback for a user)."""
    result = CliRunner().invoke(app, list(args), **kwargs)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"the command raised {result.exception!r}:\n{result.output}")
    assert_no_traceback(result.output)
    if expect is not None:
        assert result.exit_code == expect, f"exit {result.exit_code}, expected {expect}:\n{result.output}"
    return result
