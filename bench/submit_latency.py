"""How long a small batch's submission and a status read take, request by request, on a warm server:

    python -m bench.submit_latency [--jobs 200] [--rounds 10]

A real `corral server` (SQLite, one host-runtime worker) runs one untimed batch, then `--rounds` times
submits `--jobs` `true` jobs as a client sends a batch (create, one bunch, commit), waits until they
complete, pauses, and reads the batch's status 30 times. Medians per request, in ms, from the client's
clock (the HTTP round trip on loopback included; a 404 is timed as the floor). Wall time: noise under
load; run the builds to compare one after the other (CORRAL_BENCH_SERVER_CMD, or PYTHONPATH).
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid

from bench.corral_server import CorralServer, _check, _dumps, job_spec
from bench.workloads.common import CORRAL_JOB_CPU, host_worker_settings, warm_up


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=10)
    args = parser.parse_args()
    times: dict[str, list[float]] = {"create": [], "jobs": [], "commit": [], "submission": [],
                                     "status": [], "404": []}
    with CorralServer("submit-latency", host_worker_settings()) as server:
        warm_up(server)
        with server.client() as c:
            for _ in range(args.rounds):
                time.sleep(0.5)
                body = _dumps([job_spec(j, ["true"], cpu=CORRAL_JOB_CPU) for j in range(1, args.jobs + 1)])
                t0 = time.perf_counter()
                r = c.post("/api/v1/batches/create", json={"billing_project": "default",
                                                           "token": uuid.uuid4().hex, "n_jobs": args.jobs})
                _check(r)
                batch_id = int(r.json()["id"])
                t1 = time.perf_counter()
                _check(c.post(f"/api/v1/batches/{batch_id}/updates/1/jobs/create", content=body,
                              headers={"Content-Type": "application/json"}))
                t2 = time.perf_counter()
                _check(c.patch(f"/api/v1/batches/{batch_id}/updates/1/commit"))
                t3 = time.perf_counter()
                for key, seconds in (("create", t1 - t0), ("jobs", t2 - t1), ("commit", t3 - t2),
                                     ("submission", t3 - t0)):
                    times[key].append(seconds)
                server.wait(c, batch_id, timeout=60)
                time.sleep(0.2)
                for _ in range(30):
                    t = time.perf_counter()
                    _check(c.get(f"/api/v1/batches/{batch_id}"))
                    times["status"].append(time.perf_counter() - t)
                    t = time.perf_counter()
                    c.get("/api/v1/no-such-route")
                    times["404"].append(time.perf_counter() - t)
    print(f"{args.jobs} jobs a batch, {args.rounds} rounds; medians (min):")
    for key, values in times.items():
        print(f"  {key:10s} {1e3 * statistics.median(values):7.2f} ms  ({1e3 * min(values):.2f})")


if __name__ == "__main__":
    main()
