"""The address a service's endpoint advertises: never loopback (nor IPv6) when its ports are forwarded
from the instance into a private network, since jobs there reach only the instance's other addresses."""

from __future__ import annotations

import psutil
import pytest

from corral.worker.service import ServiceRunner, external_address


def _has_external_ipv4() -> bool:
    return any(
        a.family.name == "AF_INET" and not a.address.startswith("127.")
        for addresses in psutil.net_if_addrs().values()
        for a in addresses
    )


def test_a_configured_worker_address_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CORRAL_WORKER_ADDRESS", "10.1.2.3")
    runner = ServiceRunner("http://127.0.0.1:9")
    assert runner.host == "10.1.2.3" and runner.nat_host() == "10.1.2.3"


@pytest.mark.parametrize("driver", ["http://127.0.0.1:9", "http://[::1]:9"])
def test_loopback_and_ipv6_give_way_to_an_external_ipv4_address(
    monkeypatch: pytest.MonkeyPatch, driver: str
) -> None:
    monkeypatch.delenv("CORRAL_WORKER_ADDRESS", raising=False)
    if not _has_external_ipv4():
        pytest.skip("this machine has no external IPv4 address")
    runner = ServiceRunner(driver)
    assert runner.host in ("127.0.0.1", "::1")  # on the host network, loopback reaches a local driver
    address = runner.nat_host()
    assert address == external_address()
    assert not address.startswith("127.") and ":" not in address
