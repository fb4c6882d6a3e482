"""Billing rules: what an attempt is charged for on each kind of provider, exact usage arithmetic,
versioned rates, limits and the overshoot bound, reports."""

from __future__ import annotations

import itertools
from decimal import Decimal

import pytest

from corral.domain.billing.config import BillingConfig
from corral.domain.billing.ledger import (
    MS_PER_DAY,
    breakdown,
    cost_of,
    day_segments,
    slice_usage,
    to_ms,
    total,
)
from corral.domain.billing.limits import burn_rate_per_hour, is_over_limit, limit_message, overshoot_bound
from corral.domain.billing.pricing import AttemptDemand, InstanceFacts, PricedResource, price_attempt
from corral.domain.billing.rate_book import RateBook
from corral.domain.billing.reports import UsageEntry, report

GIB = 1024**3
CONFIG = BillingConfig.model_validate({
    "site": {"cpu_core_hour": 0.04, "memory_gib_hour": 0.005, "storage_gib_hour": 0.0001,
             "gpu_hour": {"default": 1.0, "A100": 2.5}},
    "collections": {
        "lab": {"cpu_core_hour": 0.02, "hosts": {"gpu1": {"gpu_hour": {"A100": 1.8}}}},
        "hpc": {"billing_unit_hour": 0.01,
                "partitions": {"debug": {"cpu": 1.0, "memory_gib": 0.25, "gpu": 2.0}}},
        "vast": {"pricing": "instance"},
        "aws": {"price_table": {"m5.xlarge": 0.192}},
    },
})


def instance(collection: str = "default", **kw: object) -> InstanceFacts:
    base: dict[str, object] = {"name": "i-1", "collection": collection, "job_private": False,
                               "cores_mcpu": 8000, "memory_bytes": 32 * GIB}
    base.update(kw)
    return InstanceFacts(**base)  # type: ignore[arg-type]


def as_dict(priced: list[PricedResource]) -> dict[str, tuple[float, int]]:
    return {p.resource: (p.rate, p.quantity) for p in priced}


def test_local_workers_pay_site_rates_per_resource() -> None:
    demand = AttemptDemand(cores_mcpu=2000, memory_bytes=3 * GIB + 1, storage_bytes=10 * GIB)
    assert as_dict(price_attempt(CONFIG, instance(), demand)) == {
        "cpu/site": (0.04, 2000), "memory/site": (0.005, 3 * 1024 + 1),  # a started MiB counts whole
        "storage/site": (0.0001, 10 * 1024),
    }


def test_gpus_are_charged_by_type_with_a_default() -> None:
    demand = AttemptDemand(1000, GIB, gpus=2)
    a100 = as_dict(price_attempt(CONFIG, instance(gpus=4, gpu_type="A100"), demand))
    other = as_dict(price_attempt(CONFIG, instance(gpus=4, gpu_type="T4"), demand))
    assert a100["gpu/site/A100"] == (2.5, 2) and other["gpu/site/T4"] == (1.0, 2)


def test_ssh_host_rates_override_the_collection_which_overrides_the_site() -> None:
    demand = AttemptDemand(1000, GIB, gpus=1)
    on_gpu1 = as_dict(price_attempt(CONFIG, instance("lab", host="gpu1", gpus=1, gpu_type="A100"), demand))
    assert on_gpu1 == {"cpu/lab/gpu1": (0.02, 1000), "memory/lab/gpu1": (0.005, 1024),
                       "gpu/lab/gpu1/A100": (1.8, 1)}
    elsewhere = as_dict(price_attempt(CONFIG, instance("lab", host="gpu2"), demand))
    assert elsewhere["cpu/lab"] == (0.02, 1000) and elsewhere["memory/lab"] == (0.005, 1024)


def test_slurm_partition_weights_times_the_billing_unit_price() -> None:
    demand = AttemptDemand(4000, 8 * GIB, gpus=1)
    node = instance("hpc", partition="debug", gpus=2, gpu_type="V100")
    priced = as_dict(price_attempt(CONFIG, node, demand))
    assert priced == {"cpu/hpc/debug": (0.01 * 1.0, 4000), "memory/hpc/debug": (0.01 * 0.25, 8 * 1024),
                      "gpu/hpc/debug/V100": (0.01 * 2.0, 1)}


def test_rented_host_price_is_shared_by_the_jobs_share() -> None:
    host = instance("vast", name="vast-7", gpus=4, gpu_type="A100", price_per_hour=2.0)
    one_gpu = price_attempt(CONFIG, host, AttemptDemand(1000, GIB, gpus=1))
    assert as_dict(one_gpu) == {"instance/vast/vast-7": (2.0, 250_000)}  # a quarter of the host
    cpu_only = price_attempt(CONFIG, instance("vast", name="v", price_per_hour=1.0), AttemptDemand(2000, GIB))
    assert as_dict(cpu_only) == {"instance/vast/v": (1.0, 250_000)}  # 2 of its 8 cores


def test_cloud_price_table_and_job_private_instances_charge_the_whole_instance() -> None:
    vm = instance("aws", machine_type="m5.xlarge", job_private=True)
    assert as_dict(price_attempt(CONFIG, vm, AttemptDemand(1000, GIB))) == {
        "instance/aws/m5.xlarge": (0.192, 1_000_000)
    }
    unpriced_private = instance("default", job_private=True, cores_mcpu=4000, memory_bytes=8 * GIB)
    priced = as_dict(price_attempt(CONFIG, unpriced_private, AttemptDemand(1000, GIB)))
    assert priced["cpu/site"] == (0.04, 4000) and priced["memory/site"] == (0.005, 8 * 1024)


def test_old_cost_per_core_hour_setting_is_the_site_cpu_rate_when_billing_names_none() -> None:
    demand = AttemptDemand(500, GIB)
    priced = as_dict(price_attempt(BillingConfig(), instance(), demand, site_cpu_core_hour=3.0))
    assert priced["cpu/site"] == (3.0, 500)


def test_config_rejects_unknown_keys_and_negative_rates() -> None:
    with pytest.raises(ValueError, match="cpu_per_hour"):
        BillingConfig.model_validate({"site": {"cpu_per_hour": 1.0}})
    with pytest.raises(ValueError, match="greater than or equal"):
        BillingConfig.model_validate({"site": {"cpu_core_hour": -1}})


def test_usage_sliced_anyhow_adds_up_to_the_whole_exactly() -> None:
    resources = [("cpu/site/1", 1500), ("memory/site/1", 3000)]
    start, end = to_ms(1_700_000_000.123), to_ms(1_700_003_700.987)
    whole = slice_usage(resources, start, end)
    cuts = [start, start + 1, start + 999, start + 123_456, end - 7, end]
    sliced: dict[tuple[str, str], int] = {}
    for a, b in itertools.pairwise(cuts):
        for k, v in slice_usage(resources, a, b).items():
            sliced[k] = sliced.get(k, 0) + v
    assert sliced == whole
    assert sum(v for (_, n), v in whole.items() if n == "cpu/site/1") == 1500 * (end - start)


def test_usage_is_split_at_utc_midnight_and_a_correction_is_negative() -> None:
    midnight = 20_000 * MS_PER_DAY
    assert day_segments(midnight - 1000, midnight + 500) == [("2024-10-03", 1000), ("2024-10-04", 500)]
    assert day_segments(midnight + 500, midnight - 1000) == [("2024-10-03", -1000), ("2024-10-04", -500)]
    assert day_segments(5, 5) == []


def test_cost_is_usage_times_the_decimal_rate() -> None:
    # 2 cores for 90 minutes at 0.04 per core-hour = 0.12, exactly
    assert cost_of("cpu/site/1", 2000 * 90 * 60_000, Decimal("0.04")) == Decimal("0.12")
    lines = breakdown([("memory/site/1", 1024 * 3_600_000), ("cpu/site/1", 1000 * 1_800_000),
                       ("cpu/site/1", 1000 * 1_800_000)], {"cpu/site/1": Decimal("0.04"),
                                                          "memory/site/1": Decimal("0.005")})
    assert [(line.resource, line.cost) for line in lines] == [("cpu/site/1", Decimal("0.04")),
                                                              ("memory/site/1", Decimal("0.005"))]
    assert total(lines) == Decimal("0.045")


def test_a_new_rate_is_a_new_version_and_the_same_rate_keeps_its_version() -> None:
    book = RateBook()
    v1, new1 = book.version_for("cpu/site", 0.04, 1.0)
    same, new_same = book.version_for("cpu/site", 0.04, 2.0)
    v2, new2 = book.version_for("cpu/site", 0.05, 3.0)
    assert (v1.name, new1, same.name, new_same, v2.name, new2) == (
        "cpu/site/1", True, "cpu/site/1", False, "cpu/site/2", True)
    assert book.by_name == {"cpu/site/1": Decimal("0.04"), "cpu/site/2": Decimal("0.05")}


def test_reaching_the_limit_is_over_and_the_message_names_project_limit_and_spend() -> None:
    assert not is_over_limit(Decimal("9.99"), 10.0)
    assert is_over_limit(Decimal("10"), 10.0)
    assert not is_over_limit(Decimal("1000"), None)
    message = limit_message("lab", 10.0, Decimal("10.5"), "USD")
    assert "'lab'" in message and "10.5 USD spent" in message and "10 USD limit" in message


def test_overshoot_bound_is_the_burn_rate_over_one_accounting_interval() -> None:
    priced = [PricedResource("cpu/site", 3.6, 2000), PricedResource("memory/site", 0.9, 1024)]
    burn = burn_rate_per_hour(priced)
    assert burn == pytest.approx(3.6 * 2 + 0.9 * 1)
    assert overshoot_bound(burn, accrual_interval=5.0, tick_seconds=1.0) == pytest.approx(burn * 6 / 3600)


def test_report_groups_usage_by_project_user_or_day() -> None:
    rates = {"cpu/site/1": Decimal("3.6")}
    hour = 1000 * 3_600_000  # one core-hour
    entries = [UsageEntry("lab", "ann", "2026-01-01", "cpu/site/1", hour),
               UsageEntry("lab", "bob", "2026-01-02", "cpu/site/1", 2 * hour),
               UsageEntry("hpc", "ann", "2026-01-02", "cpu/site/1", hour)]
    assert [(r.key, r.cost) for r in report(entries, "project", rates)] == [
        ("hpc", Decimal("3.6")), ("lab", Decimal("10.8"))]
    assert [(r.key, r.cost) for r in report(entries, "user", rates)] == [
        ("ann", Decimal("7.2")), ("bob", Decimal("7.2"))]
    assert [(r.key, r.cost) for r in report(entries, "day", rates)] == [
        ("2026-01-01", Decimal("3.6")), ("2026-01-02", Decimal("10.8"))]
