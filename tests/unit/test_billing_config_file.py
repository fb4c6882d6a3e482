"""The [billing] section of the server's TOML file: read with its units, typos named."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral.config import Settings


def test_billing_section_of_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "corral.toml"
    config.write_text(
        '[billing]\ncurrency = "EUR"\naccrual_interval = 2.5\n'
        '[billing.site]\ncpu_core_hour = 0.04\ngpu_hour = { default = 1.0, A100 = 2.5 }\n'
        '[billing.collections.hpc]\nbilling_unit_hour = 0.01\n'
        'partitions.debug = { cpu = 1.0, memory_gib = 0.25 }\n'
    )
    monkeypatch.setenv("CORRAL_CONFIG", str(config))
    billing = Settings().billing
    assert (billing.currency, billing.accrual_interval, billing.site.cpu_core_hour) == ("EUR", 2.5, 0.04)
    assert billing.site.gpu_hour == {"default": 1.0, "A100": 2.5}
    assert billing.collections["hpc"].partitions["debug"].memory_gib == 0.25


def test_a_typo_in_the_billing_section_names_the_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "corral.toml"
    config.write_text("[billing.site]\ncpu_per_core_hour = 0.04\n")
    monkeypatch.setenv("CORRAL_CONFIG", str(config))
    with pytest.raises(ValueError, match="cpu_per_core_hour"):
        Settings()
