"""tcpcopy flag parsing: accepted forms, defaults, and one-line errors naming the flag."""

from __future__ import annotations

import pytest

from engine import bpf
from engine.options import OptionsError, Transfer, parse_tcpcopy_args, parse_transfer
from engine.packets import ip_aton
from engine.tcpcopy.setup import capture_program

BASE = ["-x", "80-10.77.1.20:80", "-s", "10.77.1.30"]


def test_minimal_defaults() -> None:
    o = parse_tcpcopy_args(BASE)
    assert o.transfers == [Transfer(0, 80, ip_aton("10.77.1.20"), 80)]
    assert o.intercepts == [("10.77.1.30", 36524)]
    assert (o.connections, o.replicas, o.sample_pct, o.mtu, o.mss) == (2, 1, 0, 1500, 1460)
    assert o.session_timeout == 600 and o.keepalive_timeout is None and o.memory_mb == 2048
    assert not o.lonely and o.reconnect_interval == 0.5 and o.stats_interval == 1.0
    assert o.hold_timeout == 30.0


def test_all_short_flags() -> None:
    o = parse_tcpcopy_args([
        "-x", "10.77.1.10:80-10.77.1.20:8080,443-10.77.1.20:443", "-s", "10.77.1.30:999,10.77.1.31",
        "-p", "4000", "-C", "3", "-c", "10.79.1.x,10.79.2.5", "-n", "2", "-f", "3", "-r", "50",
        "-t", "60", "-k", "90", "-m", "100", "-M", "1400", "-D", "1300", "-l", "/tmp/l",
        "-P", "/tmp/p", "-d", "-O", "-W", "-L", "-F", "tcp dst port 80", "-i", "eth0,eth1"])
    assert len(o.transfers) == 2 and o.transfers[0].online_ip == ip_aton("10.77.1.10")
    assert o.transfers[0].target_port == 8080
    assert o.intercepts == [("10.77.1.30", 999), ("10.77.1.31", 4000)]
    assert len(o.fake_ips) == 255 and o.fake_ips[0] == ip_aton("10.79.1.1")
    assert o.fake_ips[-1] == ip_aton("10.79.2.5")
    assert (o.connections, o.replicas, o.port_shift, o.sample_pct) == (3, 2, 3, 50)
    assert (o.session_timeout, o.keepalive_timeout, o.memory_mb, o.mtu, o.mss) == (
        60, 90, 100, 1400, 1300)
    assert o.daemon and o.only_full and o.no_wait and o.lonely
    assert o.bpf_filter == "tcp dst port 80" and o.interfaces == ["eth0", "eth1"]


def test_long_and_new_options() -> None:
    o = parse_tcpcopy_args(["--transfer", "80-10.0.0.2:80", "--intercepts", "10.0.0.3",
                            "--key-file", "/k", "--stats-file", "/s.json",
                            "--stats-interval", "0.5", "--max-sessions", "100",
                            "--session-buffer-bytes", "1048576", "--lonely",
                            "--reconnect-interval", "1", "--hold-timeout", "10"])
    assert o.key_file == "/k" and o.stats_file == "/s.json" and o.stats_interval == 0.5
    assert o.reconnect_interval == 1.0 and o.hold_timeout == 10.0
    assert o.max_sessions == 100 and o.session_buffer_bytes == 1048576 and o.lonely


def test_mac_suffixes_for_output_device() -> None:
    t = parse_transfer("80@02:00:00:00:00:01-10.0.0.2:80@02:00:00:00:00:02")
    assert t.src_mac == bytes([2, 0, 0, 0, 0, 1]) and t.target_mac == bytes([2, 0, 0, 0, 0, 2])
    o = parse_tcpcopy_args(["-x", "80-10.0.0.2:80@02:00:00:00:00:02", "-s", "10.0.0.3",
                            "-o", "eth0"])
    assert o.output_device == "eth0"


def test_fake_pool_skips_target_address() -> None:
    o = parse_tcpcopy_args([*BASE, "-c", "10.77.1.20,10.79.0.1"])
    assert o.fake_ips == [ip_aton("10.79.0.1")]


def test_help_and_version() -> None:
    assert parse_tcpcopy_args(["-h"]).show_help
    assert parse_tcpcopy_args(["-v"]).show_version


@pytest.mark.parametrize(("argv", "flag"), [
    (["-s", "10.0.0.3"], "-x"),
    (["-x", "80-10.0.0.2:80"], "-s"),
    (["-x", "80-10.0.0.2", "-s", "1.2.3.4"], "-x"),
    (["-x", "99999-10.0.0.2:80", "-s", "1.2.3.4"], "-x"),
    (["-x", "80-10.0.0.300:80", "-s", "1.2.3.4"], "-x"),
    ([*BASE, "-c", "10.79.0.*"], "-c"),
    ([*BASE, "-c", "bogus"], "-c"),
    ([*BASE, "-C", "0"], "-C"),
    ([*BASE, "-C", "12"], "-C"),
    ([*BASE, "-n", "1024"], "-n"),
    ([*BASE, "-f", "256"], "-f"),
    ([*BASE, "-r", "101"], "-r"),
    ([*BASE, "-M", "1500", "-D", "1480"], "-D"),
    ([*BASE, "-o", "eth0"], "-x"),
    ([*BASE, "--stats-interval", "0"], "--stats-interval"),
    ([*BASE, "--hold-timeout", "-1"], "--hold-timeout"),
    ([*BASE, "--hold-timeout", "soon"], "--hold-timeout"),
    ([*BASE, "--bogus"], "--bogus"),
    ([*BASE, "-Z"], "-Z"),
    ([*BASE, "-n", "two"], "-n"),
    (["-x", "80-10.0.0.2:80", "-s", "1.2.3.4:0"], "-s"),
])
def test_errors_name_the_flag(argv: list, flag: str) -> None:
    with pytest.raises(OptionsError) as exc:
        parse_tcpcopy_args(argv)
    msg = str(exc.value)
    assert flag in msg and "\n" not in msg


def test_capture_acks_selects_the_kernel_filter() -> None:
    base = ["-x", "80-10.0.0.2:80", "-s", "10.0.0.3"]
    dropping = parse_tcpcopy_args(base)
    keeping = parse_tcpcopy_args([*base, "--capture-acks"])
    assert not dropping.capture_acks and keeping.capture_acks
    assert capture_program(dropping) == bpf.tcp_port_filter([80], (), "dst",
                                                            skip_pure_acks=True)
    assert capture_program(keeping) == bpf.tcp_port_filter([80], (), "dst")
