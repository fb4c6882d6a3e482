from __future__ import annotations

import pytest

from corral.domain.resources import MEMORY_PER_CORE, parse_bytes, parse_cpu_mcpu, parse_resources
from corral.errors import InvalidInput


@pytest.mark.parametrize(
    ("value", "mcpu"), [("1", 1000), ("0.5", 500), (0.25, 250), ("250m", 250), (2, 2000), (None, 1000)]
)
def test_cpu_strings(value: str | float | None, mcpu: int) -> None:
    assert parse_cpu_mcpu(value) == mcpu


@pytest.mark.parametrize("value", ["lots", "-1", "0", "1x", "nan"])
def test_bad_cpu_names_the_field(value: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_cpu_mcpu(value, field="bunch[3].resources.cpu")
    assert err.value.field == "bunch[3].resources.cpu"
    assert "bunch[3].resources.cpu" in err.value.message


@pytest.mark.parametrize(
    ("value", "size"),
    [("256Mi", 256 * 1024**2), ("1Gi", 1024**3), ("1G", 10**9), ("1.5Gi", int(1.5 * 1024**3)), (1024, 1024)],
)
def test_sizes(value: str | int, size: int) -> None:
    assert parse_bytes(value, field="memory") == size


def test_named_memory_scales_with_cores() -> None:
    req = parse_resources("2", "highmem", None)
    assert req.memory_bytes == 2 * MEMORY_PER_CORE["highmem"]
    assert parse_resources("0.5", None, "10Gi").memory_bytes == MEMORY_PER_CORE["standard"] // 2


def test_bad_memory_is_rejected_with_advice() -> None:
    with pytest.raises(InvalidInput) as err:
        parse_resources("1", "a lot", None, prefix="bunch[0].resources")
    assert err.value.field == "bunch[0].resources.memory"
    assert "512Mi" in err.value.message
