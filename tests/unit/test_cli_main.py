"""The `corral` command's argument parsing and error reporting (no server needed)."""

from __future__ import annotations

import json
import types
import typing
from pathlib import Path

import pydantic
import pytest
from typer.testing import CliRunner

from corral.cli.main import app
from corral.cli.serve import build_settings
from corral.config import Settings

runner = CliRunner()


def test_help_lists_every_command() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for command in ("server", "worker", "demo", "run", "batch", "job", "user", "billing-project"):
        assert command in result.output


def test_server_has_an_option_for_every_scalar_setting() -> None:
    """Scalars are options; structured sections (lists, tables) live in the --config file only."""
    result = runner.invoke(app, ["server", "--help"], terminal_width=200)
    assert result.exit_code == 0
    assert "--config" in result.output
    for name, info in Settings.model_fields.items():
        if _is_section(info.annotation):
            assert f"--{name.replace('_', '-')}" not in result.output, name
            continue
        assert f"--{name.replace('_', '-')}" in result.output, name


def _is_section(annotation: object) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (list, dict):
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_section(arg) for arg in typing.get_args(annotation) if arg is not type(None))
    return isinstance(annotation, type) and issubclass(annotation, pydantic.BaseModel)


def test_server_options_override_the_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("CORRAL_PORT", "1234")
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path))
    monkeypatch.delenv("CORRAL_URL_FILE", raising=False)
    settings = build_settings({"port": 0, "local_workers": 2})
    assert (settings.port, settings.local_workers) == (0, 2)
    assert settings.url_file == tmp_path / "server.url"
    assert build_settings({}).port == 1234


def test_bad_option_value_exits_2() -> None:
    result = runner.invoke(app, ["batch", "get", "not-a-number"])
    assert result.exit_code == 2


def test_unknown_command_exits_2() -> None:
    assert runner.invoke(app, ["frobnicate"]).exit_code == 2


def test_worker_rejects_a_bad_memory_size_with_a_message() -> None:
    result = runner.invoke(
        app, ["worker", "--url", "http://x", "--name", "n", "--token", "t", "--memory", "lots"]
    )
    assert result.exit_code == 1
    assert "'lots' is not a size" in result.output


def test_unreachable_server_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path))
    result = runner.invoke(app, ["--url", "http://127.0.0.1:9", "--token", "t", "batch", "get", "1"])
    assert result.exit_code == 4  # ExitCode.UNREACHABLE
    assert "cannot reach the Corral server" in result.output


def test_missing_token_says_how_to_give_one(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path))
    monkeypatch.delenv("CORRAL_TOKEN", raising=False)
    result = runner.invoke(app, ["--url", "http://127.0.0.1:9", "batch", "list"])
    assert result.exit_code == 1
    assert "CORRAL_TOKEN" in result.output


def test_no_server_for_the_home_says_how_to_start_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_HOME", str(tmp_path))
    monkeypatch.delenv("CORRAL_URL", raising=False)
    result = runner.invoke(app, ["batch", "list"])
    assert result.exit_code == 4
    assert f"no Corral server is running for {tmp_path}" in result.output
    assert "start one with `corral server`" in result.output


def test_run_executes_a_script_with_its_arguments(tmp_path: Path) -> None:
    script = tmp_path / "pipeline.py"
    out = tmp_path / "argv.json"
    script.write_text(f"import json, sys\njson.dump(sys.argv[1:], open({str(out)!r}, 'w'))\n")
    result = runner.invoke(app, ["run", str(script), "a", "--flag"])
    assert result.exit_code == 0, result.output
    assert json.loads(out.read_text()) == ["a", "--flag"]


def test_run_of_a_missing_script_exits_1() -> None:
    result = runner.invoke(app, ["run", "/nonexistent/pipeline.py"])
    assert result.exit_code == 1 and "no such file" in result.output


def test_version() -> None:
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("corral ")
