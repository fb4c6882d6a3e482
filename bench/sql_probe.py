"""`corral server` with every SQL statement counted (a bench helper, see bench/sql_per_job.py).

    CORRAL_BENCH_SERVER_CMD="python bench/sql_probe.py server" ...

A SQLAlchemy `before_cursor_execute` listener on every engine counts statements (by their first words),
the parameter rows of executemany, and commits. The driver's ticks and its `report` (a worker's events
until they are durable) are timed. SIGUSR1 writes the running totals as JSON to
$CORRAL_HOME/sql_counts.json. Statements a PostgreSQL COPY sends (store/bulk.py) are not counted.
"""

from __future__ import annotations

import collections
import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

statements: collections.Counter[str] = collections.Counter()
rows: collections.Counter[str] = collections.Counter()
commits = [0]


def _shape(sql: str) -> str:
    """The statement's kind and main table: `UPDATE jobs`, `SELECT ... FROM attempts`."""
    text = " ".join(sql.split())
    head = text.split(" ", 1)[0].upper()
    if head == "SELECT":
        m = re.search(r"\bFROM\s+([\w\".]+)", text, re.IGNORECASE)
        return f"SELECT {m.group(1) if m else '?'}"
    m = re.match(r"(?:INSERT INTO|UPDATE|DELETE FROM)\s+([\w\".]+)", text, re.IGNORECASE)
    return f"{head} {m.group(1) if m else text[:40]}"


def _install() -> None:
    @event.listens_for(Engine, "before_cursor_execute")
    def count(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
              executemany: bool) -> None:
        shape = _shape(statement)
        statements[shape] += 1
        rows[shape] += len(parameters) if executemany and parameters is not None else 1

    @event.listens_for(Engine, "commit")
    def committed(conn: Any) -> None:
        commits[0] += 1

    from corral.driver.driver import Driver

    timings: dict[str, list[float]] = {"tick": [], "report": []}
    tick, report = Driver._tick, Driver.report

    async def timed_tick(self: Driver, inbox: Any) -> bool:
        t0 = time.perf_counter()
        try:
            return await tick(self, inbox)
        finally:
            timings["tick"].append(time.perf_counter() - t0)

    async def timed_report(self: Driver, inst: Any, events: Any) -> list[str]:
        t0 = time.perf_counter()
        try:
            return await report(self, inst, events)
        finally:
            timings["report"].append(time.perf_counter() - t0)

    from uvicorn.protocols.http import httptools_impl

    requests: collections.Counter[str] = collections.Counter()
    run_asgi = httptools_impl.RequestResponseCycle.run_asgi

    async def counted(self: Any, app: Any) -> None:
        path = str(self.scope.get("path", ""))
        requests[f"{self.scope.get('method')} {'/'.join(path.split('/')[:5])}"] += 1
        await run_asgi(self, app)

    httptools_impl.RequestResponseCycle.run_asgi = counted  # type: ignore[method-assign]
    Driver._tick = timed_tick  # type: ignore[method-assign]
    Driver.report = timed_report  # type: ignore[method-assign]

    def dump(*_: object) -> None:
        out = Path(os.environ["CORRAL_HOME"]) / "sql_counts.json"
        tmp = out.with_suffix(".tmp")
        tmp.write_text(json.dumps({"statements": statements, "rows": rows, "commits": commits[0],
                                   "timings": timings, "requests": requests}))
        tmp.replace(out)

    signal.signal(signal.SIGUSR1, dump)


if __name__ == "__main__":
    _install()
    from corral.cli.main import app  # after the listener, before any engine

    app(prog_name="corral", args=sys.argv[1:])
