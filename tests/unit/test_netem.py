"""The copy path's network conditions (engine/netem.py) and the latency histogram."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List

import pytest

from engine.daemon import read_netem
from engine.latency import Histogram
from engine.netem import Netem, NetemSpec, check_spec, parse_file
from engine.options import OptionsError, parse_tcpcopy_args
from engine.options.intercept import UsageError, parse_args


def drain(net: Netem[int], until: float, step: float = 0.001) -> List[tuple]:
    out = []
    t = 0.0
    while t <= until:
        out += [(round(t, 3), x) for x in net.due(t)]
        t += step
    return out


def test_delay_holds_every_item_and_keeps_the_order() -> None:
    c: Dict[str, int] = {}
    net: Netem[int] = Netem(NetemSpec(delay_ms=50, jitter_ms=10), c, seed=1)
    for i in range(100):
        assert net.offer(i, 100, i * 0.001) is None
    assert net.next_deadline() is not None and net.next_deadline() >= 0.040
    out = drain(net, 0.3)
    assert [x for _t, x in out] == list(range(100))          # FIFO despite the jitter
    for (t, x) in out:
        assert x * 0.001 + 0.040 - 0.0011 <= t <= x * 0.001 + 0.060 + 0.002 or t >= x * 0.001
    assert c["netem_delayed"] == 100 and len(net) == 0


def test_loss_drops_about_the_share_asked_and_counts_it() -> None:
    c: Dict[str, int] = {}
    net: Netem[int] = Netem(NetemSpec(loss_pct=10), c, seed=7)
    sent = [i for i in range(10_000) if net.offer(i, 100, 0.0) is not None]
    assert 9_000 - 300 < len(sent) < 9_000 + 300
    assert c["netem_dropped"] == 10_000 - len(sent)


def test_reordered_items_overtake_the_delayed_ones() -> None:
    c: Dict[str, int] = {}
    net: Netem[int] = Netem(NetemSpec(delay_ms=20, reorder_pct=30), c, seed=3)
    now_sent = [i for i in range(1000) if net.offer(i, 100, 0.0) is not None]
    later = [x for _t, x in drain(net, 0.05)]
    assert c["netem_reordered"] > 200 and len(now_sent) + len(later) == 1000
    assert later == sorted(later)


def test_rate_serialises_at_the_given_bitrate() -> None:
    c: Dict[str, int] = {}
    net: Netem[int] = Netem(NetemSpec(rate_kbit=800), c)         # 100 bytes per ms
    first = net.offer(0, 1000, 0.0)
    assert first == 0                                            # the link was free
    for i in range(1, 11):
        assert net.offer(i, 1000, 0.0) is None
    out = drain(net, 0.2, step=0.0005)
    assert [x for _t, x in out] == list(range(1, 11))
    assert out[-1][0] == pytest.approx(0.100, abs=0.002)  # after 10 x 10 ms of link time


def test_bad_specs_name_the_flag() -> None:
    assert check_spec(NetemSpec(delay_ms=10, jitter_ms=20))[0] == "--netem-jitter"  # type: ignore[index]
    assert check_spec(NetemSpec(reorder_pct=5))[0] == "--netem-reorder"  # type: ignore[index]
    assert check_spec(NetemSpec(loss_pct=101))[0] == "--netem-loss"  # type: ignore[index]
    assert check_spec(NetemSpec(delay_ms=5)) is None
    with pytest.raises(OptionsError, match="--netem-jitter: larger than --netem-delay"):
        parse_tcpcopy_args(["-x", "80-10.0.0.2:80", "-s", "10.0.0.3", "--netem-jitter", "5"])
    opts = parse_tcpcopy_args(["-x", "80-10.0.0.2:80", "-s", "10.0.0.3", "--netem-delay", "50",
                               "--netem-loss", "0.5"])
    assert opts.netem == NetemSpec(delay_ms=50, loss_pct=0.5) and opts.netem.active
    assert opts.netem.describe() == "delay 50 ms, loss 0.5 %"
    with pytest.raises(UsageError, match="--netem-loss"):
        parse_args(["-F", "tcp and src port 80", "--netem-loss", "200"])
    io = parse_args(["-F", "tcp and src port 80", "--netem-delay", "25"])
    assert io is not None and io.netem.delay_ms == 25


def test_latency_histogram_percentiles_within_a_bucket() -> None:
    h = Histogram()
    for i in range(1, 1001):
        h.add(i / 1000.0)                   # 1 .. 1000 ms
    s = h.summary()
    assert s["count"] == 1000 and s["max"] == 1000.0
    assert 500 <= s["p50"] <= 550 and 900 <= s["p90"] <= 990 and 990 <= s["p99"] <= 1090
    assert Histogram().summary()["p99"] == 0.0


def test_netem_file_is_parsed_strictly_and_names_the_key(tmp_path: Path) -> None:
    assert parse_file('{"delay_ms": 50, "jitter_ms": 5}') == NetemSpec(50, 5)
    assert parse_file("") == NetemSpec() and parse_file("{}") == NetemSpec()
    for text, why in (('{"delay": 5}', "unknown key 'delay'"), ("[1]", "JSON object"),
                      ('{"loss_pct": "x"}', "loss_pct: expected a number"),
                      ('{"jitter_ms": 9, "delay_ms": 1}', "netem_jitter: larger"),
                      ("{", "not JSON")):
        with pytest.raises(ValueError, match=why):
            parse_file(text)
    path = tmp_path / "netem.json"
    flags = NetemSpec(delay_ms=7)
    assert read_netem(str(path), flags) == flags               # no file: the flags
    path.write_text('{"delay_ms": 30}')
    assert read_netem(str(path), flags) == NetemSpec(30)
    path.write_text('{"delay_ms": -1}')
    with pytest.raises(ValueError, match=f"--netem-file {path}: netem_delay"):
        read_netem(str(path), flags)


def test_reconfigure_changes_what_comes_next_only() -> None:
    c: Dict[str, int] = {}
    net: Netem[int] = Netem(NetemSpec(delay_ms=100), c)
    assert net.offer(1, 10, 0.0) is None
    net.reconfigure(NetemSpec())
    assert net.offer(2, 10, 0.01) is None        # behind the held one: order kept
    assert [x for _t, x in drain(net, 0.2)] == [1, 2]
    assert net.offer(3, 10, 0.3) == 3
