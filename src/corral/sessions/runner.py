"""Running a session: validate the recipe, submit its batch, register the session, show progress, and
when the batch ends read the results from the client jobs, store them, write Parquet and the report.

Everything after submission can be redone from the store at any time (`finalize`): a runner killed
mid-session, or a server restarted, loses nothing; `corral bench report` finishes the job.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from corral.client.backends import Backend, LocalBackend
from corral.client.dsl import Batch
from corral.client.sync import SyncClient
from corral.errors import CorralError, InvalidInput
from corral.sessions import results as res
from corral.sessions.plan import build, check_types
from corral.sessions.recipe import Recipe, expand_matrix, load_recipe, parse_recipe
from corral.sessions.report import manifest_of, write_report
from corral.sessions.verdicts import compare, reference_verdicts, slo_verdicts, stats_from_rows

Progress = Callable[[str], None]


@dataclass
class SessionOutcome:
    id: int
    name: str
    batch_id: int
    state: str
    report: Path | None
    failed_cells: list[str]
    verdicts_failed: int


def as_recipe(recipe: Recipe | dict[str, Any] | str | Path) -> Recipe:
    if isinstance(recipe, Recipe):
        return recipe
    if isinstance(recipe, dict):
        return parse_recipe(recipe)
    return load_recipe(recipe)


def _api(client: SyncClient, method: str, path: str, **kwargs: Any) -> Any:
    return client.run(client.aio.request(method, path, **kwargs)).json()


def get_session(client: SyncClient, ref: str | int) -> dict[str, Any]:
    session: dict[str, Any] = _api(client, "GET", f"/api/v1/bench/sessions/{ref}")
    return session


def list_sessions(client: SyncClient) -> list[dict[str, Any]]:
    sessions: list[dict[str, Any]] = _api(client, "GET", "/api/v1/bench/sessions")
    return sessions


def get_results(client: SyncClient, ref: str | int, **query: Any) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = _api(client, "GET", f"/api/v1/bench/sessions/{ref}/results", params=query)
    return rows


def submit(
    recipe: Recipe, backend: Backend, *, name: str | None = None, pool: str | None = None
) -> dict[str, Any]:
    """Submit the session's batch and register the session; returns the session."""
    check_types(recipe)
    client = backend.client()
    _api(client, "POST", "/api/v1/bench/recipes/validate", json=recipe.model_dump(mode="json"))
    session_name = name or recipe.name
    batch = Batch(name=f"bench:{session_name}", backend=backend, attributes={"bench_session": session_name})
    plan = build(recipe, batch, session=session_name, pool=pool)
    handle = batch.submit()
    try:
        created = _api(
            client,
            "POST",
            "/api/v1/bench/sessions",
            idempotent=False,
            json={
                "name": session_name,
                "recipe": recipe.model_dump(mode="json"),
                "batch_id": handle.id,
                "manifest": {
                    "cells": [c.__dict__ for c in plan.cells],
                    "services": plan.n_services,
                    "clients": plan.n_clients,
                },
            },
        )
    except CorralError:
        client.cancel_batch(handle.id)
        raise
    return get_session(client, created["id"])


def progress_line(client: SyncClient, session: dict[str, Any]) -> tuple[str, bool]:
    """What runs now: the cell, the service's state, clients done; and whether the batch is complete."""
    batch_id = int(session["batch_id"])
    status = client.get_batch(batch_id)
    running_cells: set[str] = set()
    services: list[str] = []
    done = total = 0
    for job in client.iter_jobs(batch_id):
        if job.name and job.name.startswith("svc-"):
            if job.state in ("Running", "Ready", "Pending"):
                services.append(f"{job.name}: {'serving' if job.serving else job.state}")
            continue
        total += 1
        if job.state in ("Success", "Failed", "Error", "Cancelled"):
            done += 1
        elif job.state == "Running" and job.name:
            running_cells.add(job.name.rsplit("-", 3)[-3] if job.name.count("-") >= 3 else job.name)
    cells = ",".join(sorted(running_cells)) or "-"
    line = (
        f"session {session['name']} (#{session['id']}): cell {cells}; service "
        f"{'; '.join(services) or 'none running'}; clients {done}/{total} done; batch {status.state}"
    )
    return line, bool(status.complete)


def wait(
    client: SyncClient,
    session: dict[str, Any],
    progress: Progress | None = None,
    timeout: float | None = None,
    interval: float = 1.0,
) -> None:
    deadline = None if timeout is None else time.monotonic() + timeout
    last = ""
    while True:
        line, complete = progress_line(client, session)
        if progress is not None and line != last:
            progress(line)
            last = line
        if complete:
            return
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"session {session['name']} is not complete after {timeout}s")
        time.sleep(interval)


def finalize(client: SyncClient, ref: str | int, out_dir: Path | None = None) -> SessionOutcome:
    """Read results from the batch, store them, write Parquet and the report (idempotent)."""
    session = get_session(client, ref)
    recipe = parse_recipe(session["recipe"])
    batch_id = int(session["batch_id"])
    batch = client.get_batch(batch_id)
    runs, services = res.collect(client, batch_id)
    cells = {c.id: c.params for c in expand_matrix(recipe)}
    rows = res.rows(int(session["id"]), cells, runs)
    stats, params = stats_from_rows(rows)
    failed_cells = sorted(
        f"{cell}/{client_label}" for (cell, client_label), m in stats.items() if res.cell_failed(m)
    )
    expected = {(c, cl.label) for c in cells for cl in recipe.clients}
    failed_cells += sorted(f"{c}/{cl}" for c, cl in expected - set(stats))  # never measured at all
    if not batch.complete:
        state = "running"
    elif batch.state == "cancelled":
        state = "cancelled"
    else:
        state = "success" if batch.state == "success" and not failed_cells else "failure"
    baseline = None
    for ref_spec in recipe.references:
        if ref_spec.baseline is not None and baseline is None:
            try:
                baseline = stats_from_rows(get_results(client, ref_spec.baseline))
            except CorralError:
                baseline = None
    verdicts = slo_verdicts(recipe, stats) + reference_verdicts(recipe, stats, params, baseline)
    images = sorted({i for i in [recipe.service.image, *(c.image for c in recipe.clients)] if i})
    session["state"] = state
    manifest = manifest_of(
        session, recipe.digest(), recipe.seed, recipe.repetitions, runs, images, batch.model_dump()
    )
    manifest["failed_cells"] = failed_cells
    _api(
        client,
        "PUT",
        f"/api/v1/bench/sessions/{session['id']}/results",
        json={
            "state": state,
            "manifest": manifest,
            "rows": [
                {k: r[k] for k in ("cell", "repetition", "client", "metric", "value", "unit", "params")}
                for r in rows
            ],
        },
    )
    page = None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        res.write_parquet(out_dir / f"session-{session['id']}.parquet", rows, runs)
        page = write_report(out_dir, manifest, stats, params, runs, services, verdicts)
    return SessionOutcome(
        int(session["id"]),
        session["name"],
        batch_id,
        state,
        page,
        failed_cells,
        sum(1 for v in verdicts if not v.passed),
    )


def run(
    recipe: Recipe | dict[str, Any] | str | Path,
    backend: Backend | None = None,
    *,
    name: str | None = None,
    pool: str | None = None,
    out_dir: Path | str | None = None,
    progress: Progress | None = None,
    timeout: float | None = None,
) -> SessionOutcome:
    """Run a benchmark session to its end and write its report (`corral.bench.run`)."""
    parsed = as_recipe(recipe)
    backend = backend or LocalBackend()
    session = submit(parsed, backend, name=name, pool=pool)
    client = backend.client()
    wait(client, session, progress, timeout)
    out = Path(out_dir) if out_dir is not None else Path(f"bench-{session['name']}-{session['id']}")
    return finalize(client, session["id"], out)


def stop(client: SyncClient, ref: str | int) -> dict[str, Any]:
    """Cancel the session's batch: services are stopped, clients killed; results so far are kept."""
    session = get_session(client, ref)
    if session.get("batch_id") is None:
        raise InvalidInput(f"session {ref} has no batch", field="session")
    client.cancel_batch(int(session["batch_id"]))
    return session


def compare_sessions(
    client: SyncClient | None, a: str, b: str, *, tolerance: float, metrics: list[str] | None = None
) -> list[Any]:
    def load(ref: str) -> Any:
        path = Path(ref)
        if path.exists():  # a report directory (or its results.json)
            import json

            data = json.loads((path / "results.json" if path.is_dir() else path).read_text())
            rows = []
            for key, cell in data["cells"].items():
                cell_id, client_label = key.split("/", 1)
                for metric, m in cell["metrics"].items():
                    for i, value in enumerate(m["values"] or [None]):
                        rows.append(
                            {
                                "cell": cell_id,
                                "client": client_label,
                                "repetition": i + 1,
                                "metric": metric,
                                "value": value,
                                "unit": m["unit"],
                                "params": cell["params"],
                            }
                        )
            return stats_from_rows(rows)
        if client is None:
            raise InvalidInput(f"{ref}: no such report directory, and no server to ask", field="session")
        return stats_from_rows(get_results(client, ref))

    return compare(load(a), load(b), tolerance=tolerance, metrics=metrics)
