"""The worker hands each attempt its own GPUs and hides the others."""

from __future__ import annotations

from pathlib import Path

from corral.runtimes.base import MainRequest
from corral.runtimes.sandbox import bwrap_argv
from corral.worker.gpus import GpuDevices, device_nodes, parse_gpu_ids, visible_devices_env


def test_gpu_ids_from_a_list_or_a_count() -> None:
    assert parse_gpu_ids("2,3") == ["2", "3"]
    assert parse_gpu_ids("3") == ["0", "1", "2"]
    assert parse_gpu_ids("") == [] and parse_gpu_ids(None) == []


def test_attempts_get_distinct_devices_until_released() -> None:
    devices = GpuDevices(["0", "1", "2"])
    assert devices.acquire("a", 2) == ["0", "1"]
    assert devices.acquire("b", 2) is None  # only one left
    assert devices.acquire("c", 1) == ["2"]
    devices.release("a")
    assert devices.acquire("b", 2) == ["0", "1"]  # in device order, whatever the release order
    assert devices.acquire("d", 0) == []


def test_visible_devices_env_hides_everything_for_no_gpus() -> None:
    assert visible_devices_env(["1", "3"])["CUDA_VISIBLE_DEVICES"] == "1,3"
    assert visible_devices_env([])["CUDA_VISIBLE_DEVICES"] == ""
    assert visible_devices_env([])["NVIDIA_VISIBLE_DEVICES"] == "none"


def test_the_sandbox_binds_only_the_jobs_device_nodes(tmp_path: Path) -> None:
    request = MainRequest(
        key="1.1.1", command=["true"], io_dir=tmp_path, scratch=tmp_path, tmp_dir=tmp_path,
        log_path=tmp_path / "log", devices=("/dev/nvidia1", "/dev/nvidiactl"),
    )
    argv = bwrap_argv("/usr/bin/bwrap", request)
    binds = [argv[i + 1] for i, a in enumerate(argv) if a == "--dev-bind"]
    assert binds == ["/dev/nvidia1", "/dev/nvidiactl"]
    assert "--dev-bind" not in bwrap_argv("/usr/bin/bwrap", MainRequest(
        key="1.1.1", command=["true"], io_dir=tmp_path, scratch=tmp_path, tmp_dir=tmp_path, log_path=tmp_path,
    ))


def test_no_device_nodes_without_gpus() -> None:
    assert device_nodes([]) == []
