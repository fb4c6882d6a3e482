"""A database trigger built from domain.states.TRANSITIONS that aborts any job state write the table does
not allow (and any job inserted in a state other than Pending). Every test store has it, so every test
that drives the store also proves each of its statements is a legal move."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from corral.domain.states import TRANSITIONS, JobState
from corral.store.job_moves import move_jobs
from corral.store.tables import jobs


def _edges() -> list[str]:
    return sorted(f"{src.value}>{dst.value}" for src, targets in TRANSITIONS.items() for dst in targets)


def _sqlite() -> list[str]:
    edges = ", ".join(f"'{e}'" for e in _edges())
    return [
        "DROP TRIGGER IF EXISTS corral_legal_move",
        f"""CREATE TRIGGER corral_legal_move BEFORE UPDATE OF state ON jobs FOR EACH ROW
            WHEN OLD.state IS NOT NEW.state AND (OLD.state || '>' || NEW.state) NOT IN ({edges})
            BEGIN SELECT RAISE(ABORT, 'illegal job move (transition table)'); END""",
        "DROP TRIGGER IF EXISTS corral_insert_pending",
        f"""CREATE TRIGGER corral_insert_pending BEFORE INSERT ON jobs FOR EACH ROW
            WHEN NEW.state IS NOT '{JobState.PENDING.value}'
            BEGIN SELECT RAISE(ABORT, 'jobs are inserted Pending'); END""",
    ]


def _postgres() -> list[str]:
    edges = ", ".join(f"'{e}'" for e in _edges())
    return [
        f"""CREATE OR REPLACE FUNCTION corral_legal_move() RETURNS trigger AS $$
            BEGIN
              IF TG_OP = 'INSERT' AND NEW.state <> '{JobState.PENDING.value}' THEN
                RAISE EXCEPTION 'jobs are inserted Pending, not %', NEW.state;
              END IF;
              IF TG_OP = 'UPDATE' AND OLD.state IS DISTINCT FROM NEW.state
                 AND (OLD.state || '>' || NEW.state) NOT IN ({edges}) THEN
                RAISE EXCEPTION 'illegal job move % -> % (transition table)', OLD.state, NEW.state;
              END IF;
              RETURN NEW;
            END $$ LANGUAGE plpgsql""",
        "DROP TRIGGER IF EXISTS corral_legal_move ON jobs",
        """CREATE TRIGGER corral_legal_move BEFORE INSERT OR UPDATE OF state ON jobs
            FOR EACH ROW EXECUTE FUNCTION corral_legal_move()""",
    ]


async def install(engine: AsyncEngine) -> None:
    statements = _sqlite() if engine.dialect.name == "sqlite" else _postgres()
    async with engine.begin() as conn:
        for statement in statements:
            await conn.execute(text(statement))


async def walk_to(conn: AsyncConnection, batch_id: int, job_ids: Iterable[int], state: str) -> None:
    """Put jobs in `state` as the driver would, along legal moves (tests that stage a driver's outcome)."""
    target = JobState(state)
    for job_id in job_ids:
        current = JobState(
            (await conn.execute(
                select(jobs.c.state).where(jobs.c.batch_id == batch_id, jobs.c.job_id == job_id)
            )).scalar_one()
        )
        for step in _path(current, target):
            await move_jobs(conn, step, [{"b": batch_id, "j": job_id}])


def _path(src: JobState, dst: JobState) -> list[JobState]:
    paths: dict[JobState, list[JobState]] = {src: []}
    frontier = [src]
    while frontier:
        nxt = []
        for state in frontier:
            for target in sorted(TRANSITIONS[state]):
                if target not in paths:
                    paths[target] = [*paths[state], target]
                    nxt.append(target)
        frontier = nxt
    if dst not in paths:
        raise ValueError(f"no legal way from {src} to {dst}")
    return paths[dst]
