"""The site's [jobs] policy reaches remote workers (ssh hosts, SLURM pilots, rented hosts) from the server's
Settings, however it was set (corral.toml or CORRAL_JOBS), and the worker reads back the same policy."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from corral.config import Settings
from corral.images.config import ImagesConfig
from corral.providers.base import InstanceRequest, MachineShape, worker_environment
from corral.providers.slurm.options import SlurmOptions
from corral.providers.slurm.pilot import pilot_script
from corral.runtimes.config import JobsConfig


@pytest.fixture(autouse=True)
def _no_outside_config(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("CORRAL_JOBS", "CORRAL_IMAGES", "CORRAL_CONFIG"):
        monkeypatch.delenv(name, raising=False)


def test_a_site_that_sets_no_policy_sends_nothing(tmp_path: Path) -> None:
    assert worker_environment(Settings(home=tmp_path)) == {}


def test_a_policy_from_the_config_file_is_sent_and_read_back_the_same(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "corral.toml"
    config.write_text('[jobs]\nhost_network = true\nvisible_paths = ["/opt/sw"]\n')
    monkeypatch.setenv("CORRAL_CONFIG", str(config))
    env = worker_environment(Settings(home=tmp_path))
    assert set(env) == {"CORRAL_JOBS"}
    sent = JobsConfig.model_validate_json(env["CORRAL_JOBS"])
    assert sent.host_network and sent.visible_paths == [Path("/opt/sw")]
    assert sent.default_network == JobsConfig().default_network  # defaults stay the worker's own


def test_the_slurm_pilot_exports_it_and_a_worker_started_with_it_has_the_policy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    server = Settings(home=tmp_path, jobs=JobsConfig(host_network=True, share_user_environment=False))
    request = InstanceRequest("inst-1", "pool", MachineShape("pool", 1, 1 << 30), "tok", "http://h:1")
    script = pilot_script(SlurmOptions(), request, "http://h:9/", worker_environment(server))
    exports = dict(shlex.split(line[len("export "):])[0].split("=", 1) for line in script.splitlines()
                   if line.startswith("export ") and "=" in line)
    monkeypatch.setenv("CORRAL_JOBS", exports["CORRAL_JOBS"])
    worker = Settings(home=tmp_path / "worker")
    assert worker.jobs == server.jobs
    assert "CORRAL_JOBS" not in pilot_script(SlurmOptions(), request, "http://h:9/")


def test_image_settings_travel_with_their_password_but_not_the_servers_cache_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = tmp_path / "corral.toml"
    config.write_text(
        '[images]\ncache_dir = "/srv/corral-images"\nuser_namespace = false\n'
        '[images.registries."reg.lab:5000"]\ninsecure = true\nusername = "robot"\npassword = "s3cret"\n'
    )
    monkeypatch.setenv("CORRAL_CONFIG", str(config))
    server = Settings(home=tmp_path)
    env = worker_environment(server)
    assert set(env) == {"CORRAL_IMAGES"}
    monkeypatch.delenv("CORRAL_CONFIG")
    monkeypatch.setenv("CORRAL_IMAGES", env["CORRAL_IMAGES"])
    worker = Settings(home=tmp_path / "worker")
    registry = worker.images.registry("reg.lab:5000")
    assert registry.insecure and registry.username == "robot" and registry.password is not None
    assert registry.password.get_secret_value() == "s3cret"
    assert worker.images.user_namespace is False
    assert worker.images.cache_dir is None and ImagesConfig().cache_dir is None  # the worker's own default
