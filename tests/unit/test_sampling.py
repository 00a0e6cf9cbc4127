"""``-r`` sampling: deterministic per (client ip, port) and uniform over consecutive ports."""

from __future__ import annotations

import pytest

from engine.packets import ip_aton
from engine.session.config import sample_keep

CLIENTS = [ip_aton(a) for a in ("10.78.1.10", "10.78.4.10", "192.168.44.7", "172.16.0.1",
                                "10.0.0.1", "203.0.113.250")]


@pytest.mark.parametrize("ip", CLIENTS)
@pytest.mark.parametrize("pct", [10, 30, 50, 90])
def test_consecutive_ports_of_one_client_sample_near_the_rate(ip: int, pct: int) -> None:
    # one client opening 3,000 connections uses consecutive ephemeral ports
    for first in (32768, 40000, 50000, 60999 - 3000):
        kept = sum(sample_keep(ip, port, pct) for port in range(first, first + 3000))
        assert abs(100.0 * kept / 3000 - pct) <= 3.0, (ip, pct, first, kept)


def test_small_windows_of_ports_stay_close_to_the_rate() -> None:
    ip = CLIENTS[0]
    for first in range(32768, 60000, 300):
        kept = sum(sample_keep(ip, port, 30) for port in range(first, first + 300))
        assert 60 <= kept <= 120, (first, kept)         # 90 expected; ~5 standard deviations


def test_many_clients_with_one_port_sample_near_the_rate() -> None:
    kept = sum(sample_keep(ip_aton(f"10.78.{i // 250}.{i % 250 + 1}"), 40000, 30)
               for i in range(3000))
    assert abs(100.0 * kept / 3000 - 30) <= 3.0


def test_sampling_is_deterministic_and_bounds_keep_everything() -> None:
    ip = CLIENTS[1]
    assert [sample_keep(ip, p, 30) for p in range(1000, 1100)] == [
        sample_keep(ip, p, 30) for p in range(1000, 1100)]
    assert all(sample_keep(ip, p, 0) and sample_keep(ip, p, 100) for p in range(100))
    assert not any(sample_keep(ip, p, 1) and not sample_keep(ip, p, 2) for p in range(5000))
