"""Parsing and judging a health sample (providers/health.py)."""

from __future__ import annotations

from corral.providers.health import HealthThresholds, judge, parse_sample

DISK_MEM = "== disk\n100000000000 50000000000\n== memory\n8000000000 4000000000\n"


def test_a_host_without_nvidia_smi_is_not_judged_on_gpus() -> None:
    sample = judge(parse_sample(DISK_MEM + "== gpus\nnone\n", now=1.0), HealthThresholds(), expected_gpus=2)
    assert sample.healthy and not sample.nvidia_smi and sample.disk_free == 50_000_000_000


def test_missing_gpus_ecc_errors_heat_and_a_full_disk_are_each_named() -> None:
    out = DISK_MEM.replace("50000000000", "100") + "== gpus\n0, RTX 4090, 97, 1000, 24564, 95, 2\n"
    sample = judge(parse_sample(out, now=1.0), HealthThresholds(), expected_gpus=2)
    assert not sample.healthy
    assert sample.problems == [
        "free disk 0 MiB < 1Gi",
        "1 GPUs visible, 2 expected",
        "GPU 0 has 2 uncorrected ECC errors",
        "GPU 0 at 95 C > 90 C",
    ]


def test_a_failing_nvidia_smi_is_a_problem_and_na_ecc_counts_as_zero() -> None:
    failing = judge(parse_sample(DISK_MEM + "== gpus\nnvidia-smi failed: 9\n"), HealthThresholds())
    assert failing.problems == ["GPU query failed: nvidia-smi failed: 9"]
    consumer = judge(
        parse_sample(DISK_MEM + "== gpus\n0, RTX 3090, 5, 10, 24576, 40, [N/A]\n"),
        HealthThresholds(),
        expected_gpus=1,
    )
    assert consumer.healthy and consumer.gpus[0].ecc_errors == 0
