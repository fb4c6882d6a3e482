"""What the host and process runtimes share, tested on both: a job's memory limit is its cgroup's, and a
job over it fails out of memory (real cgroups; the process runtime also needs bubblewrap)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from tests.integration.runtime_support import (
    CGROUP_RUNTIMES,
    Make,
    MiB,
    memory_limit_probe,
    request_builder,
    run,
    started_runtime,
)

from corral.runtimes.process import ProcessRuntime


@pytest.fixture(params=CGROUP_RUNTIMES)
async def runtime(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[ProcessRuntime]:
    rt = await started_runtime(request.param, tmp_path)
    yield rt
    await rt.close()


@pytest.fixture
def make(tmp_path: Path) -> Make:
    return request_builder(tmp_path)


async def test_memory_limit_is_written_to_the_jobs_cgroup(runtime: ProcessRuntime, make: Make) -> None:
    req = make(memory_limit_probe(runtime), memory_bytes=100 * MiB)
    result = await run(runtime, req)
    assert result.state == "succeeded", req.log_path.read_text()
    assert int(req.log_path.read_text().strip()) == 100 * MiB


async def test_exceeding_the_memory_limit_fails_out_of_memory(runtime: ProcessRuntime, make: Make) -> None:
    # tail keeps a "line" with no newline in memory: 200 MiB under a 64 MiB limit.
    result = await run(runtime, make("head -c 200M /dev/zero | tail > /dev/null", memory_bytes=64 * MiB))
    assert result.state == "failed"
    assert result.out_of_memory
    assert result.exit_code == 137
    assert result.error and "memory" in result.error
    assert result.max_memory_bytes > 32 * MiB
