"""Sampling units: tcpcopy's `-r` keeps or drops a client (address, port) whole, so verify's
tolerance must count the requests of every connection from a reused port as one unit."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from labctl.verify import ledger as L
from labctl.verify import logparse as lp
from labctl.verify.logparse import LogRecord
from labctl.verify.sampling import sampling_basis, sampling_sd

LOGS = Path(__file__).resolve().parents[1] / "fixtures" / "logs"
T0 = 1_800_000_000.0


def rec(i: int, port: int | None, conn: int | None) -> LogRecord:
    return LogRecord(T0 + i * 0.01, "10.78.1.10", "GET", f"/r{i}", 200, 10, 100, None, 0.01,
                     conn, None, remote_port=port)


def test_connections_from_a_reused_port_are_one_unit() -> None:
    # 100 connections of one request each, from 10 ports reused 10 times (NAT, a pool)
    reused = [rec(i, port=40000 + i % 10, conn=i) for i in range(100)]
    assert sampling_sd(reused, 50, 1) == pytest.approx(0.05 * 10 ** 0.5)
    # the same log without $remote_port can only count connections: the lower bound
    no_port = [dataclasses.replace(r, remote_port=None) for r in reused]
    assert sampling_sd(no_port, 50, 1) == pytest.approx(0.05)
    # without $connection either, every request is its own unit
    bare = [dataclasses.replace(r, connection=None) for r in no_port]
    assert sampling_sd(bare, 50, 1) == pytest.approx(0.05)
    assert sampling_sd(reused, 100, 1) == 0.0 and sampling_sd([], 50, 1) == 0.0
    assert (sampling_basis(reused), sampling_basis(no_port), sampling_basis(bare)) == (
        "port", "connection", "request")
    # one line without the port (an older line of a rotated log) lowers the basis
    assert sampling_basis(reused[:-1] + no_port[-1:]) == "connection"


def copies(on: list[LogRecord], keep: set[int]) -> list[LogRecord]:
    return [dataclasses.replace(r, time=(r.time or 0) + 0.2, remote_addr="10.79.1.5",
                                remote_port=None) for r in on if r.remote_port in keep]


def test_a_sampled_copy_with_reused_ports_is_judged_on_its_units() -> None:
    # 40 client ports, each reused for 25 one-request connections; -r 50 kept 16 ports whole:
    # 400 of 1000 copied. By port that is 1.3 sd off the expected 0.5 (PASS); counted by
    # connection it looked like 6.3 sd (a false FAIL).
    on = [rec(i, port=41000 + i % 40, conn=i) for i in range(1000)]
    kept = {41000 + p for p in range(16)}
    tg = copies(on, kept)
    rep = L.build(L.LedgerInput({"online": on}, tg, sample_percent=50,
                                allowed_sources=["10.79.1.0/24"]))
    assert rep.copy_ratio == pytest.approx(0.4)
    assert rep.verdict.passed, rep.verdict.reasons
    assert not any("$remote_port" in n for n in rep.notes)
    blind = [dataclasses.replace(r, remote_port=None) for r in on]
    rep = L.build(L.LedgerInput({"online": blind}, copies(on, kept), sample_percent=50,
                                allowed_sources=["10.79.1.0/24"]))
    assert not rep.verdict.passed
    assert any("no $remote_port" in n and "counted by connection" in n for n in rep.notes), \
        rep.notes


def test_the_labctl_format_logs_the_client_port_and_older_lines_still_parse() -> None:
    text = (LOGS / "labctl-remote-port.log").read_text()
    res = lp.parse_text(text, lp.LogFormat("labctl"), "labctl-remote-port.log")
    assert res.malformed == 0
    assert [r.remote_port for r in res.records] == [56430, 40312, 49016, 49016, 40312, 42772]
    assert [r.connection_requests for r in res.records][2:4] == [1, 2]
    assert res.records[-1].host == "a.example" and res.records[-1].content_length == 7
    older = lp.parse_text((LOGS / "labctl.log").read_text(), lp.LogFormat("labctl"))
    assert older.malformed == 0 and older.records
    assert all(r.remote_port is None for r in older.records)
    assert lp.LABCTL == lp.LABCTL_V2 + " $remote_port"
