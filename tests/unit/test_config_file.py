"""The TOML configuration file: read from $CORRAL_CONFIG, overridden by variables and options."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.config import Settings
from corral.errors import ConfigError


def test_file_values_apply_and_explicit_options_win(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "corral.toml"
    config.write_text('pool = "gpu"\nlocal_workers = 3\nheartbeat_timeout = 7.5\n')
    monkeypatch.setenv("CORRAL_CONFIG", str(config))
    monkeypatch.setenv("CORRAL_HEARTBEAT_TIMEOUT", "9")
    settings = Settings(local_workers=2)
    assert settings.pool == "gpu"
    assert settings.local_workers == 2
    assert settings.heartbeat_timeout == 9.0


def test_missing_config_file_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_CONFIG", str(tmp_path / "nope.toml"))
    with pytest.raises(ConfigError, match=r"nope\.toml"):
        Settings()


def test_instance_collections_section_is_validated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "corral.toml"
    config.write_text(
        '[[instance_collections]]\nname = "lab"\nprovider = "ssh"\nshape = { cores = 4, memory = "16Gi" }\n'
        "max_instances = 3\n[instance_collections.provider_options]\nuser = \"root\"\n"
    )
    monkeypatch.setenv("CORRAL_CONFIG", str(config))
    (lab,) = Settings().instance_collections
    assert (lab.name, lab.kind, lab.provider, lab.max_instances) == ("lab", "pool", "ssh", 3)
    assert lab.shape is not None and lab.shape.cores == 4
    assert lab.provider_options == {"user": "root"}
    config.write_text('[[instance_collections]]\nname = "lab"\nprovider = "ssh"\nmax_instance = 3\n')
    with pytest.raises(ValueError, match="max_instance"):
        Settings()
