"""A wrong configuration stops `corral server` at once with one line naming the key, and exit code 3."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.cli_support import corral_env, run_corral

CONFIG_EXIT = 3


def _server(home: Path, config: Path | None, *extra: str) -> tuple[int, str]:
    args = ["server", "--port", "0", *(["--config", str(config)] if config else []), *extra]
    result = run_corral(args, env=corral_env(home), timeout=120)
    return result.code, result.stderr


@pytest.mark.parametrize(
    ("toml", "expected"),
    [
        ("local_worker = 0\n", "unknown setting 'local_worker'"),
        ("local_workers = [\n", "not valid TOML"),
        ("local_workers = 'many'\n", "setting local_workers"),
        (
            '[[instance_collections]]\nname = "lab"\nprovider = "ssh"\nshape = { cores = 1 }\n'
            "[instance_collections.provider_options]\nhostz = []\n",
            "instance_collections[lab].provider_options.hostz",
        ),
        (
            'pool = "labz"\nlocal_workers = 0\n[[instance_collections]]\nname = "lab"\nprovider = "ssh"\n'
            "shape = { cores = 1 }\n",
            "pool 'labz' names no instance collection",
        ),
    ],
    ids=["unknown-key", "toml-syntax", "bad-value", "bad-provider-options", "pool-without-collection"],
)
def test_a_bad_config_file_is_one_line_naming_the_key(tmp_path: Path, toml: str, expected: str) -> None:
    config = tmp_path / "corral.toml"
    config.write_text(toml)
    code, stderr = _server(tmp_path / "home", config)
    assert code == CONFIG_EXIT, stderr
    assert expected in stderr
    assert str(config) in stderr or "instance_collections" in stderr or "pool" in stderr
    assert len(stderr.strip().splitlines()) <= 2, stderr  # one message, not a log of a failed start
    assert not (tmp_path / "home" / "server.url").exists()


def test_a_missing_config_file_is_named(tmp_path: Path) -> None:
    code, stderr = _server(tmp_path / "home", tmp_path / "nope.toml")
    assert code == CONFIG_EXIT
    assert "no such file" in stderr and "nope.toml" in stderr


def test_a_missing_ssh_key_file_is_an_error_at_start(tmp_path: Path) -> None:
    config = tmp_path / "corral.toml"
    config.write_text(
        '[[instance_collections]]\nname = "lab"\nprovider = "ssh"\nshape = { cores = 1 }\n'
        "[[instance_collections.provider_options.hosts]]\n"
        f'name = "box1"\naddress = "127.0.0.1"\ncores = 1\nkey = "{tmp_path}/no-such-key"\n'
    )
    code, stderr = _server(tmp_path / "home", config, "--local-workers", "1")
    assert code == CONFIG_EXIT, stderr
    assert "instance_collections[lab].provider_options.hosts[box1].key" in stderr
    assert "no such key file" in stderr


def test_every_server_flag_has_help_and_the_dead_flag_is_gone(tmp_path: Path) -> None:
    result = run_corral(["server", "--help"], env=corral_env(tmp_path, COLUMNS="400"), expect=0)
    assert "--scheduler-interval" not in result.stdout
    options = [line for line in result.stdout.splitlines() if line.strip("│ ").startswith("--")]
    assert len(options) > 15
    for line in options:
        text = line.strip("│ ")
        _, _, rest = text.partition(" ")
        words = rest.split()
        # After the flag and its type (FLOAT, TEXT, …) comes the help text.
        assert any(w[:1].islower() or w[:1] == "\\" or w.startswith("[") for w in words[1:]), line
