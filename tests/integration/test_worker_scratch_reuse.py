"""A host-runtime worker reuses its ended attempts' clean scratch trees (worker/scratch_pool.py): a real
`corral server` and a real worker (the Agent, in this test's loop so its pool can be read), real jobs."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tests.acceptance.harness import RunningServer, job
from tests.integration.test_worker_events_reply import _instance_token, _run_batch

from corral.worker.agent import Agent

pytestmark = pytest.mark.skipif(
    os.environ.get("CI") != "true" and os.geteuid() != 0, reason="the host runtime's cgroups need root"
)


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    home = tmp_path_factory.mktemp("scratch-reuse") / "home"
    home.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CORRAL_")}
    env.update({
        "CORRAL_HOME": str(home), "CORRAL_PORT": "0", "CORRAL_URL_FILE": str(home / "server.url"),
        "CORRAL_LOCAL_WORKERS": "0", "CORRAL_JOBS": json.dumps({"allow_host_runtime": True}),
    })
    running = RunningServer(home, env)
    running.start()
    yield running
    running.stop()


async def test_jobs_one_after_another_reuse_clean_scratch_and_see_nothing_of_earlier_jobs(
    server: RunningServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CORRAL_JOBS", json.dumps({"allow_host_runtime": True}))
    name, token = _instance_token(server, cores=0.25)  # one job at a time: each can follow the last
    agent = Agent(server.url, name, token, cores=0.25, memory_bytes=2 << 30, runtime="host",
                  work_dir=tmp_path / "work")
    marker = uuid.uuid4().hex
    # Each job says what it finds in its io and tmp dirs and in its log so far, then prints a marker
    # of its own; every third leaves a file in io (its tree then must not be reused).
    look = 'ls -A "$CORRAL_IO_DIR" "$TMPDIR"; stat -c %a "$CORRAL_IO_DIR"; echo "{marker}-$CORRAL_JOB_ID"'
    jobs = []
    for i in range(1, 10):
        command = look.format(marker=marker)
        if i % 3 == 0:
            command += '; echo left > "$CORRAL_IO_DIR/left.txt"'
        else:
            command += '; chmod 000 "$CORRAL_IO_DIR"'  # a mode the next attempt must not inherit
        jobs.append(job(command, i, cpu="0.25"))
    status = await _run_batch(server, agent, jobs)
    assert status["state"] == "success", status
    pool = agent.scratch_pool
    assert pool.reused >= 4, (pool.reused, pool.kept)  # the clean trees went round
    assert pool.kept == 6  # 9 jobs, the 3 that left a file were not kept
    assert list(agent.layout.jobs.iterdir()) == []
    batch_id = status["id"]
    async with httpx.AsyncClient(base_url=server.url,
                                 headers={"Authorization": f"Bearer {server.token}"}) as c:
        for i in range(1, 10):
            log = (await c.get(f"/api/v1/batches/{batch_id}/jobs/{i}/log/main")).text
            lines = log.split()
            assert f"{marker}-{i}" in lines, log
            others = [line for line in lines if line.startswith(marker) and line != f"{marker}-{i}"]
            assert others == [], f"job {i} saw an earlier job's log: {log}"
            assert "left.txt" not in lines, f"job {i} saw an earlier job's file: {log}"
            assert oct(0o777 & ~_umask())[2:] in lines, f"job {i}'s io dir had an inherited mode: {log}"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
