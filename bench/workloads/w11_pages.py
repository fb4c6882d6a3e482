"""W11: the web pages. Page time of a 100,000-job batch and of the batches list with 10,000 batches;
server CPU with 50 open live pages on a running batch, side by side with no pages and with 50 pages
that poll instead of listening (what a page without the driver's live feed would do)."""

from __future__ import annotations

import statistics
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import psutil

from bench.context import Context
from bench.corral_server import CorralServer, job_spec
from bench.model import Result, measured
from bench.workloads.common import start_server

PAGES = 50
POLL_SECONDS = 2.0  # the polling peer reloads the page's two live parts this often


def page_ms(c: httpx.Client, path: str, repeats: int) -> list[float]:
    """Milliseconds for a full page (server render + transfer), after one warm-up request."""
    r = c.get(path)
    if r.status_code != 200:
        raise RuntimeError(f"GET {path}: HTTP {r.status_code} {r.text[:200]}")
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        r = c.get(path)
        out.append((time.perf_counter() - t0) * 1000)
        assert r.status_code == 200
    return out


def large_batch_pages(ctx: Context, n_jobs: int, repeats: int) -> list[Result]:
    server = start_server(ctx, "w11-jobs", {"local_workers": "0"})  # no workers: every job stays queued
    try:
        with server.client(timeout=300) as c:
            batch_id = server.submit_bunches(c, [job_spec(i, ["true"]) for i in range(1, n_jobs + 1)])
            time.sleep(2.0)  # let the driver take the committed jobs into its queues (as W6 does)
            first = page_ms(c, f"/ui/batches/{batch_id}", repeats)
            middle = page_ms(c, f"/ui/batches/{batch_id}?last_job_id={n_jobs // 2}", repeats)
            filtered = page_ms(c, f"/ui/batches/{batch_id}?state=ready&q=!has:x", repeats)
    finally:
        server.stop()
    note = f"{n_jobs:,} queued jobs; 50 rows a page; GET with the Bearer header, median of {repeats}"
    return [
        measured("W11", "Corral", f"batch page, {n_jobs:,} jobs", first, "ms", note=note),
        measured("W11", "Corral", f"batch page {n_jobs // 2:,}+, {n_jobs:,} jobs", middle, "ms", note=note),
        measured("W11", "Corral", f"batch page filtered, {n_jobs:,} jobs", filtered, "ms", note=note),
    ]


def many_batches_list(ctx: Context, n_batches: int, repeats: int) -> list[Result]:
    server = start_server(ctx, "w11-list", {"local_workers": "0"})
    try:
        with server.client(timeout=300) as c:

            def create(i: int) -> None:
                """Every tenth batch has a (queued) job; the others are open and empty."""
                if i % 10 == 0:
                    server.submit_fast(c, [job_spec(1, ["true"])])
                    return
                attributes = {"name": f"batch {i}", "kind": "odd" if i % 2 else "even"}
                body = {"billing_project": "default", "token": uuid.uuid4().hex, "n_jobs": 0,
                        "attributes": attributes}
                c.post("/api/v1/batches/create", json=body).raise_for_status()

            t0 = time.monotonic()
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(create, range(n_batches)))
            ctx.log(f"W11: {n_batches:,} batches created in {time.monotonic() - t0:.0f}s")
            mine = page_ms(c, "/ui/batches", repeats)
            deep = page_ms(c, f"/ui/batches?q=&last_batch_id={n_batches // 2}", repeats)
            queried = page_ms(c, "/ui/batches?q=kind%3Deven", repeats)
    finally:
        server.stop()
    note = f"{n_batches:,} batches; 50 rows a page; median of {repeats}"
    return [
        measured("W11", "Corral", f"batches list, {n_batches:,} batches", mine, "ms", note=note),
        measured("W11", "Corral", f"batches list below {n_batches // 2:,}", deep, "ms", note=note),
        measured("W11", "Corral", f"batches list kind=even, {n_batches:,}", queried, "ms", note=note),
    ]


def sweep_pages(ctx: Context, n_chunks: int, repeats: int) -> list[Result]:
    """A sweep of `n_chunks` chunk jobs (one batch, as `corral.Sweep` submits it; its storage is not the
    server's bucket, so the page derives everything from the batch): the sweep page and the list."""
    server = start_server(ctx, "w11-sweep", {"local_workers": "0"})
    try:
        with server.client(timeout=300) as c:
            jobs = [{**job_spec(i + 1, ["true"]), "name": f"chunk-{i}-{uuid.uuid4().hex[:16]}"}
                    for i in range(n_chunks)]
            attributes = {"name": "sweep w11", "sweep": "w11", "sweep_version": "v1",
                          "sweep_storage": "s3://elsewhere/sweeps"}
            body = {"billing_project": "default", "token": uuid.uuid4().hex, "n_jobs": n_chunks,
                    "attributes": attributes}
            r = c.post("/api/v1/batches/create-fast", json={"batch": body, "bunch": jobs})
            r.raise_for_status()
            time.sleep(2.0)
            first = page_ms(c, "/ui/sweeps/w11", repeats)
            later = page_ms(c, f"/ui/sweeps/w11?after={n_chunks // 2}", repeats)
            listed = page_ms(c, "/ui/sweeps", repeats)
    finally:
        server.stop()
    note = f"{n_chunks:,} chunk jobs in one batch; 200 chunks a page; median of {repeats}"
    return [
        measured("W11", "Corral", f"sweep page, {n_chunks:,} chunks", first, "ms", note=note),
        measured("W11", "Corral", f"sweep page {n_chunks // 2:,}+", later, "ms", note=note),
        measured("W11", "Corral", "sweeps list", listed, "ms", note=note),
    ]


class Pages:
    """`n` open batch pages: each listens to the live stream (sse) or polls the page's two live parts."""

    def __init__(self, server: CorralServer, batch_id: int, n: int, mode: str) -> None:
        self.server, self.batch_id, self.n, self.mode = server, batch_id, n, mode
        self.stop = threading.Event()
        self.events = 0
        self.requests = 0
        self._lock = threading.Lock()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(n)]

    def __enter__(self) -> Pages:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        for t in self._threads:
            t.join(timeout=30)

    def _run(self) -> None:
        headers = {"Authorization": f"Bearer {self.server.token}"}
        base = f"/ui/batches/{self.batch_id}"
        with httpx.Client(base_url=self.server.url, headers=headers, timeout=60) as c:
            if self.mode == "sse":
                with c.stream("GET", f"{base}/events", timeout=httpx.Timeout(60, read=None)) as r:
                    for line in r.iter_lines():
                        if line.startswith("event:"):
                            with self._lock:
                                self.events += 1
                        if self.stop.is_set():
                            return
            else:
                while not self.stop.wait(POLL_SECONDS):
                    for path in (f"{base}/jobs-table?limit=50", base):
                        c.get(path).raise_for_status()
                        with self._lock:
                            self.requests += 1


def server_cpu(server: CorralServer, window: float) -> float:
    """CPU seconds the server process (not its workers) used per second of wall time."""
    proc = psutil.Process(server.proc.pid if server.proc else 0)
    t0, c0 = time.monotonic(), sum(proc.cpu_times()[:2])
    time.sleep(window)
    return (sum(proc.cpu_times()[:2]) - c0) / (time.monotonic() - t0)


def live_pages_cpu(ctx: Context, window: float, repeats: int) -> list[Result]:
    server = start_server(ctx, "w11-live", {"local_workers": "1", "local_worker_cores": "2",
                                            "local_worker_memory": "4Gi"})
    samples: dict[str, list[float]] = {"no pages": [], "Corral": [], "polling": []}
    notes: dict[str, str] = {}
    try:
        with server.client(timeout=300) as c:
            n_jobs = int(window * 3 * repeats * 20 + 400)  # ~16 jobs/s on 2 cores: outlasts every window
            batch_id = server.submit_fast(c, [job_spec(i, ["sleep", "0.5"]) for i in range(1, n_jobs + 1)])
            time.sleep(2.0)
            runs: dict[str, Callable[[], tuple[float, Any]]] = {
                "no pages": lambda: (server_cpu(server, window), None),
                "Corral": lambda: _with_pages(server, batch_id, "sse", window),
                "polling": lambda: _with_pages(server, batch_id, "poll", window),
            }
            for rep in range(repeats):
                for name, run in runs.items():
                    cpu, seen = run()
                    samples[name].append(cpu * 100)
                    ctx.log(f"W11 {name} #{rep + 1}: server CPU {cpu * 100:.1f} % ({seen})")
                    if seen is not None:
                        notes[name] = seen
            status = server.batch(c, batch_id)
            if status["complete"]:
                raise RuntimeError("the batch finished before the measurement did; make it longer")
            c.patch(f"/api/v1/batches/{batch_id}/cancel")
    finally:
        server.stop()
    label = f"server CPU, {PAGES} open pages"
    return [
        measured("W11", "Corral", label, samples["Corral"], "% of a core",
                 note=f"live pages (server-sent events from the driver's ticks); {notes.get('Corral', '')}"),
        measured("W11", "no pages", label, samples["no pages"], "% of a core",
                 note="the same running batch with no page open"),
        measured("W11", f"polling every {POLL_SECONDS:g} s", label, samples["polling"], "% of a core",
                 note=f"each page re-reads its live parts on a timer; {notes.get('polling', '')}"),
    ]


def _with_pages(server: CorralServer, batch_id: int, mode: str, window: float) -> tuple[float, str]:
    with Pages(server, batch_id, PAGES, mode) as pages:
        time.sleep(1.0)  # connected
        before_events, before_requests = pages.events, pages.requests
        cpu = server_cpu(server, window)
        events, requests = pages.events - before_events, pages.requests - before_requests
    if mode == "sse":
        return cpu, f"{events / window:.0f} events/s received"
    return cpu, f"{requests / window:.0f} requests/s"


def run(ctx: Context) -> list[Result]:
    s = ctx.sizes
    repeats = 5 if s.quick else 20
    results = large_batch_pages(ctx, 100_000, repeats)
    results += many_batches_list(ctx, 10_000, repeats)
    results += sweep_pages(ctx, 10_000, repeats)
    results += live_pages_cpu(ctx, window=8.0 if s.quick else 15.0, repeats=1 if s.quick else 3)
    ctx.log("W11 " + "; ".join(f"{r.metric}: {statistics.median(r.samples):.1f} {r.unit}"
                                for r in results if r.samples))
    return results
