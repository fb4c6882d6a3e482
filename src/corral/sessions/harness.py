"""Corral's client harness: runs ON THE INSTANCE inside a client job.

    python -m corral.sessions.harness <base64 JSON: client config, service env name, seed, ids>

Reads the service's endpoint from CORRAL_SERVICE_<NAME>_*, runs the client type, and prints one line
`CORRAL_BENCH_RESULT {json}` (metrics, n, failures, warm-up, per-second series, samples). A failed
measurement is a result with `error` and no latency (exit 0: the job ran, the cell failed); only a
harness crash exits non-zero.
"""

from __future__ import annotations

import base64
import json
import os
import platform
import sys
import time
import traceback
from typing import Any

from corral.sessions.measure import summarize
from corral.sessions.recipe import ClientConfig
from corral.sessions.registry import REGISTRY, ClientRun, Endpoint

RESULT_MARK = "CORRAL_BENCH_RESULT "
MAX_SAMPLES = 20_000  # kept per run for percentile curves and the Parquet file


def encode_task(task: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(task, sort_keys=True).encode()).decode()


def endpoint_from_env(name: str, env: dict[str, str]) -> Endpoint:
    prefix = f"CORRAL_SERVICE_{name}_"
    try:
        host, port, url = env[prefix + "HOST"], int(env[prefix + "PORT"]), env[prefix + "URL"]
    except KeyError as exc:
        raise RuntimeError(
            f"no endpoint of service {name} in the environment ({exc.args[0]} missing)"
        ) from None
    ports = {k[len(prefix) + 5 :].lower(): int(v) for k, v in env.items() if k.startswith(prefix + "PORT_")}
    return Endpoint(host, port, url, ports)


def result_of(run: ClientRun, started: float) -> dict[str, Any]:
    metrics = summarize(run)
    return {
        "metrics": {k: {"value": v, "unit": u} for k, (v, u) in metrics.items()},
        "n": run.n,
        "failures": run.failures,
        "duration_s": run.duration_s,
        "warmup": run.warmup,
        "timeseries": run.timeseries,
        "samples": [[round(s[0], 6), round(s[1], 4), s[2]] for s in run.samples[:MAX_SAMPLES]],
        "error": run.error,
        "time_started": started,
        "time_ended": time.time(),
        "host": platform.node(),
    }


def main(argv: list[str]) -> int:
    task = json.loads(base64.urlsafe_b64decode(argv[0]))
    started = time.time()
    try:
        config = ClientConfig.model_validate(task["client"])
        endpoint = endpoint_from_env(task["service_env"], dict(os.environ))
        client = REGISTRY.client_type(config.type, "client.type")
        run = client.run(config, endpoint, int(task["seed"]))
        result = result_of(run, started)
    except Exception as exc:  # the measurement failed: say why, with no numbers
        traceback.print_exc()
        result = result_of(ClientRun(error=f"{type(exc).__name__}: {exc}"), started)
    result.update(
        cell=task["cell"],
        repetition=task["repetition"],
        client=task["label"],
        replica=task["replica"],
        seed=task["seed"],
    )
    sys.stdout.write(RESULT_MARK + json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":  # pragma: no cover - run by client jobs
    raise SystemExit(main(sys.argv[1:]))
