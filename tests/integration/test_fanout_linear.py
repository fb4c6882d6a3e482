"""Fan-out costs O(children): appending N children of a running root (a second update naming it) and the
root's completion cascade. Measured as work the database does, not time: SQLite's virtual-machine steps
(progress handler) and the number of statements on both stores, for N and 4N children."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from test_api_support import Api, api_fixture, job  # noqa: F401
from test_store_scheduling import states

from corral.domain.states import JobState
from corral.store import scheduling as q

SMALL, LARGE = 300, 1200  # 4x the children


class Work:
    """Statements sent and (SQLite) VM steps executed while counting."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.statements = 0
        self.vm_steps = 0
        self.counting = False
        self.sqlite = engine.dialect.name == "sqlite"
        event.listen(engine.sync_engine, "before_cursor_execute", self._statement)
        if self.sqlite:
            event.listen(engine.sync_engine, "checkout", self._install)

    def _statement(self, *_: Any) -> None:
        if self.counting:
            self.statements += 1

    def _step(self) -> int:
        if self.counting:
            self.vm_steps += 1
        return 0

    def _install(self, dbapi_connection: Any, *_: Any) -> None:
        dbapi_connection.run_async(lambda c: c._execute(c._conn.set_progress_handler, self._step, 100))

    @contextmanager
    def count(self) -> Iterator[Work]:
        self.statements = self.vm_steps = 0
        self.counting = True
        try:
            yield self
        finally:
            self.counting = False


async def _fan_out(api: Api, work: Work, n: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """(statements, vm steps) of appending+committing n children of a Running root, then of the root's
    completion with its cascade."""
    batch_id = await api.submit([job(1)])
    async with api.engine.begin() as conn:
        (root,) = [r.job for r in await q.load_ready_jobs(conn, batch_id)]
        await q.start_attempts(conn, [(root, "inst-1")], time.time())
    r = await api.client.post(f"/api/v1/batches/{batch_id}/updates/create",
                              json={"token": f"u{n}", "n_jobs": n})
    assert r.status_code == 200, r.text
    update_id = r.json()["update_id"]
    bunch = [job(i, absolute_parent_ids=[1]) for i in range(1, n + 1)]
    r = await api.client.post(f"/api/v1/batches/{batch_id}/updates/{update_id}/jobs/create", json=bunch)
    assert r.status_code == 200, r.text
    with work.count():
        r = await api.client.patch(f"/api/v1/batches/{batch_id}/updates/{update_id}/commit")
        assert r.status_code == 200, r.text
    commit = (work.statements, work.vm_steps)
    with work.count():
        async with api.engine.begin() as conn:
            outcome = q.AttemptOutcome(batch_id, 1, 1, JobState.SUCCESS, "success", time.time(), exit_code=0)
            result = await q.end_attempts(conn, [outcome], time.time())
    cascade = (work.statements, work.vm_steps)
    assert len(result.ready) == n
    assert set((await states(api.engine, batch_id)).values()) == {"Success", "Ready"}
    return commit, cascade


async def test_appending_and_releasing_children_costs_linear_work(api: Api) -> None:
    work = Work(api.engine)
    small_commit, small_cascade = await _fan_out(api, work, SMALL)
    large_commit, large_cascade = await _fan_out(api, work, LARGE)
    # The statements do not grow with the children (executemany, chunks of 2,000).
    assert large_commit[0] == small_commit[0]
    assert large_cascade[0] == small_cascade[0]
    if work.sqlite:
        # Linear: 4x the children is about 4x the steps; the old per-child recount was 16x.
        assert large_commit[1] < 6 * small_commit[1], (small_commit, large_commit)
        assert large_cascade[1] < 6 * small_cascade[1], (small_cascade, large_cascade)
