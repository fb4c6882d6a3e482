"""The [images] section of the configuration file, through Settings."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from corral.config import Settings


def test_images_section_is_read_from_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "corral.toml"
    config.write_text(
        "[images]\n"
        "cache_max_bytes = 1000000\n"
        'rewrite = { "docker.io/library/" = "mirror.lab:5000/lib/" }\n'
        '[images.registries."mirror.lab:5000"]\n'
        "insecure = true\n"
        'username = "bot"\n'
        'password = "s3cret"\n'
    )
    monkeypatch.setenv("CORRAL_CONFIG", str(config))
    images = Settings().images
    assert images.cache_max_bytes == 1_000_000
    assert images.rewrite == {"docker.io/library/": "mirror.lab:5000/lib/"}
    reg = images.registry("mirror.lab:5000")
    assert reg.insecure and reg.username == "bot" and reg.password is not None
    assert reg.password.get_secret_value() == "s3cret" and "s3cret" not in repr(images)
    assert not images.registry("docker.io").insecure


def test_a_misspelt_images_key_is_an_error_naming_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "corral.toml"
    config.write_text("[images]\ncache_max_byte = 5\n")
    monkeypatch.setenv("CORRAL_CONFIG", str(config))
    with pytest.raises(ValidationError, match="cache_max_byte"):
        Settings()
