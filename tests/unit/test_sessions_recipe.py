"""Recipes, the matrix, metrics and verdicts: the pure parts of benchmark sessions."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from corral.errors import InvalidInput
from corral.sessions.measure import drive, percentile, summarize
from corral.sessions.plan import check_types
from corral.sessions.recipe import Load, Stop, Warmup, client_for_cell, expand_matrix, parse_recipe
from corral.sessions.registry import ClientRun
from corral.sessions.results import CellStat
from corral.sessions.verdicts import compare, slo_verdicts


def base(**extra: Any) -> dict[str, Any]:
    return {"name": "r", "service": {"type": "redis"}, "clients": [{"type": "redis-benchmark"}], **extra}


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"servise": {}}, "servise"),
        ({"clients": [{"type": "wrk", "load": {"concurency": 2}}]}, "clients[0].load.concurency"),
        ({"clients": [{"type": "wrk", "replicas": 0}]}, "clients[0].replicas"),
        ({"clients": [{"type": "wrk", "load": {"concurrency": 2, "rate": 5}}]}, "clients[0].load"),
        ({"repetitions": "many"}, "repetitions"),
        ({"slo": [{"metric": "p99_ms"}]}, "slo[0]"),
        ({"references": [{"metric": "throughput", "value": 1, "baseline": "x"}]}, "references[0]"),
        ({"clients": []}, "clients"),
    ],
)
def test_bad_recipe_names_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as err:
        parse_recipe(base(**change))
    assert err.value.field == field, err.value.message
    assert field in err.value.message


def test_type_checks_name_the_field() -> None:
    with pytest.raises(InvalidInput) as err:
        check_types(parse_recipe(base(clients=[{"type": "wrk", "load": {"rate": 10}}])))
    assert err.value.field == "clients[0].load.rate"  # wrk has no open loop here
    with pytest.raises(InvalidInput) as err:
        check_types(parse_recipe(base(service={"type": "mysql"})))
    assert err.value.field == "service.type" and "redis" in err.value.message
    with pytest.raises(InvalidInput) as err:
        check_types(parse_recipe(base(clients=[{"type": "redis-benchmark", "params": {"test": "get"}}])))
    assert err.value.field == "clients[0].params.test"


def test_matrix_zip_and_exclude() -> None:
    recipe = parse_recipe(
        base(
            matrix={
                "service": {"io_threads": [1, 2]},
                "client": {"concurrency": [1, 4, 16], "data_size": [3, 30, 300]},
                "zip": [["concurrency", "data_size"]],
                "exclude": [{"io_threads": 1, "concurrency": 16}],
            }
        )
    )
    cells = expand_matrix(recipe)
    assert [c.params for c in cells] == [
        {"io_threads": 1, "concurrency": 1, "data_size": 3},
        {"io_threads": 1, "concurrency": 4, "data_size": 30},
        {"io_threads": 2, "concurrency": 1, "data_size": 3},
        {"io_threads": 2, "concurrency": 4, "data_size": 30},
        {"io_threads": 2, "concurrency": 16, "data_size": 300},
    ]
    client = client_for_cell(recipe.clients[0], cells[-1])
    assert client.load.concurrency == 16 and client.params["data_size"] == 300
    with pytest.raises(InvalidInput) as err:
        parse_recipe(base(matrix={"client": {"a": [1, 2], "b": [1]}, "zip": [["a", "b"]]}))
    assert err.value.field == "matrix"


def test_zero_samples_is_no_latency_never_zero() -> None:
    run = ClientRun(samples=[(0.0, 5.0, False, {}), (0.1, 7.0, False, {})])
    metrics = summarize(run)
    assert run.n == 2 and run.failures == 2
    assert (
        metrics["p50_ms"][0] is None and metrics["throughput"][0] is None and metrics["error_rate"][0] == 1.0
    )


def test_percentiles_are_over_the_whole_run() -> None:
    values = [float(v) for v in range(1, 101)]
    assert percentile(values, 50) == pytest.approx(50.5)
    assert percentile(values, 99) == pytest.approx(99.01)
    assert percentile([], 50) is None


def test_drive_meets_both_stop_conditions_and_records_warmup_apart() -> None:
    calls = 0

    async def request(_: int) -> tuple[bool, dict[str, float]]:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.001)
        return True, {}

    run = asyncio.run(
        drive(
            request, Load(concurrency=2), Stop(min_duration=0.05, min_requests=30), Warmup(requests=5), seed=1
        )
    )
    assert len(run.samples) >= 30 and run.warmup["requests"] == 5 and calls == len(run.samples) + 5
    assert max(s[0] for s in run.samples) >= 0.05 * 0.5
    assert run.timeseries[0]["measured"] == 0  # the warm-up's second is marked


def _stat(metric: str, values: list[float]) -> CellStat:
    return CellStat(metric, "ms", values, len(values))


def test_slo_fails_a_failed_cell_and_compare_flags_a_regression() -> None:
    recipe = parse_recipe(base(slo=[{"metric": "p99_ms", "max": 10}]))
    stats = {
        ("c1", "x"): {"p99_ms": _stat("p99_ms", [5.0, 6.0]), "throughput": _stat("throughput", [100.0])},
        ("c2", "x"): {"p99_ms": _stat("p99_ms", []), "throughput": _stat("throughput", [])},
    }
    verdicts = {v.cell: v.passed for v in slo_verdicts(recipe, stats)}
    assert verdicts == {"c1": True, "c2": False}
    a = ({("c1", "x"): {"p50_ms": _stat("p50_ms", [10.0, 10.5, 9.5])}}, {"c1": {"k": 1}})
    b = ({("c9", "x"): {"p50_ms": _stat("p50_ms", [20.0, 21.0, 19.0])}}, {"c9": {"k": 1}})
    same = ({("c1", "x"): {"p50_ms": _stat("p50_ms", [10.2, 10.1, 9.9])}}, {"c1": {"k": 1}})
    worse = compare(a, b, tolerance=0.1)
    assert (
        len(worse) == 1
        and worse[0].regression
        and worse[0].significant
        and worse[0].delta == pytest.approx(1.0)
    )
    assert not compare(a, same, tolerance=0.1)[0].regression
