"""The transition table is the law: every job state write goes through move_jobs, whose WHERE clause
comes from domain.states; the test store's trigger (tests/transition_guard.py) refuses anything else."""

from __future__ import annotations

import ast
import time
from pathlib import Path

import pytest
from sqlalchemy import and_, select, text, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from test_store_scheduling import make_batch, run, states

from corral.domain.states import INCOMPLETE_STATES, TRANSITIONS, JobState, legal_sources, sources_for
from corral.errors import IllegalTransition
from corral.store import scheduling as q
from corral.store.invariants import check_store
from corral.store.job_moves import move_jobs
from corral.store.tables import jobs

SRC = Path(__file__).resolve().parents[2] / "src" / "corral"


def test_the_one_definition_of_incomplete_is_every_state_with_a_way_out() -> None:
    assert {s for s, targets in TRANSITIONS.items() if targets} == INCOMPLETE_STATES
    assert "Creating" not in {s.value for s in JobState}  # nothing ever entered it: it is gone


def test_asking_move_jobs_for_an_edge_the_table_lacks_raises_before_any_sql() -> None:
    with pytest.raises(IllegalTransition, match="Pending to Success"):
        legal_sources(JobState.SUCCESS, frozenset({JobState.PENDING}))
    assert legal_sources(JobState.CANCELLED) == sources_for(JobState.CANCELLED) == INCOMPLETE_STATES


def _job_state_writes(tree: ast.AST) -> list[int]:
    """Lines of `update(jobs)....values(state=...)` and `jobs.update()` chains in a module."""
    lines = []
    for node in ast.walk(tree):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "values"):
            continue
        if not any(k.arg == "state" for k in node.keywords):
            continue
        chain = ast.dump(node.func.value)
        if ("Name(id='update'" in chain and "Name(id='jobs'" in chain) or ("attr='update'" in chain and (
            "Name(id='jobs'" in chain
        )):
            lines.append(node.lineno)
    return lines


def test_no_module_but_job_moves_writes_a_job_state() -> None:
    offenders = {}
    for path in SRC.rglob("*.py"):
        if path.name == "job_moves.py":
            continue
        lines = _job_state_writes(ast.parse(path.read_text()))
        if lines:
            offenders[str(path.relative_to(SRC))] = lines
    assert offenders == {}
    # The scan can find one: job_moves itself writes the state.
    assert _job_state_writes(ast.parse((SRC / "store" / "job_moves.py").read_text()))


async def test_the_guard_refuses_an_illegal_write_and_move_jobs_changes_nothing_illegal(
    engine: AsyncEngine,
) -> None:
    b = await make_batch(engine, {1: [], 2: [1]})
    with pytest.raises(DBAPIError, match="illegal job move"):
        async with engine.begin() as conn:
            job_2 = and_(jobs.c.batch_id == b, jobs.c.job_id == 2)
            await conn.execute(update(jobs).where(job_2).values(state="Success"))
    with pytest.raises(DBAPIError, match="inserted Pending"):
        async with engine.begin() as conn:
            job_1 = and_(jobs.c.batch_id == b, jobs.c.job_id == 1)
            row = dict((await conn.execute(select(jobs).where(job_1))).one()._mapping)
            await conn.execute(jobs.insert().values({**row, "job_id": 3, "state": "Running"}))
    await run(engine, b, 1, JobState.SUCCESS)
    await run(engine, b, 2, JobState.FAILED)
    async with engine.begin() as conn:  # complete jobs never move again: zero rows, no error
        moved = await move_jobs(conn, JobState.CANCELLED, [{"b": b, "j": 1}, {"b": b, "j": 2}],
                                values={"time_completed": time.time()})
        assert moved in (0, None)  # asyncpg cannot count executemany rows
        assert (await conn.execute(text("SELECT 1"))).scalar_one() == 1
    assert await states(engine, b) == {1: "Success", 2: "Failed"}


async def test_a_big_cancel_is_split_across_ticks_and_counts_every_job_once(engine: AsyncEngine) -> None:
    b = await make_batch(engine, {j: [] for j in range(1, 6)})
    rounds = []
    while True:
        async with engine.begin() as conn:
            result = await q.cancel_batch_jobs(conn, b, time.time(), limit=2)
        rounds.append(result.more)
        if not result.more:
            break
    assert rounds == [True, True, False]
    assert set((await states(engine, b)).values()) == {"Cancelled"}
    async with engine.connect() as conn:
        assert await check_store(conn) == []
