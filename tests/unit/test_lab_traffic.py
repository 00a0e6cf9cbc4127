"""Pure parts of the lab traffic generator."""

from __future__ import annotations

import pytest

from labctl.lab import traffic


def test_parse_sizes() -> None:
    assert traffic.parse_sizes("0,1024,64k,1m") == [0, 1024, 65536, 1048576]
    assert traffic.parse_sizes("") == []
    with pytest.raises(ValueError, match="'x1' is not a size"):
        traffic.parse_sizes("0,x1")
    with pytest.raises(ValueError, match="exceeds"):
        traffic.parse_sizes("9m")


def test_plan_cycles_gets_then_posts() -> None:
    plan = traffic.build_plan(["/", "/big"], [0, 10])
    assert [i.key() for i in plan] == ["GET / 0", "GET /big 0", "POST /echo 0", "POST /echo 10"]
    with pytest.raises(ValueError, match="nothing to send"):
        traffic.build_plan([], [])


def test_summary_counts_truth_per_request() -> None:
    plan = traffic.build_plan(["/"], [5])
    t = traffic.Tally()
    for key, ok in (("GET / 0", True), ("GET / 0", False), ("POST /echo 5", True)):
        t.attempted[key] += 1
        t.sent[key] += 1
        if ok:
            t.ok[key] += 1
    t.error_kinds["ConnectionResetError"] += 1
    other = traffic.Tally()
    other.attempted["POST /echo 5"] += 1
    other.connections = 2
    t.merge(other)
    s = traffic.summarize(t, plan, 2.0, {"mode": "new"})
    assert (s["attempted"], s["sent"], s["ok"], s["errors"]) == (4, 3, 2, 2)
    assert s["rate"] == 1.0 and s["mode"] == "new" and s["connections_opened"] == 2
    assert s["by_request"] == [
        {"method": "GET", "uri": "/", "body_len": 0, "host": "", "chunked": False,
         "attempted": 2, "sent": 2, "ok": 1, "errors": 1},
        {"method": "POST", "uri": "/echo", "body_len": 5, "host": "", "chunked": False,
         "attempted": 2, "sent": 1, "ok": 1, "errors": 1},
    ]


def test_dispatcher_hands_out_each_number_once() -> None:
    d = traffic.Dispatcher(3, None)
    assert [d.take(), d.take(), d.take(), d.take()] == [0, 1, 2, None]


@pytest.mark.parametrize("argv, message", [
    (["--url", "https://x"], "not http://HOST"),
    (["--url", "http://x", "--connections", "0"], "--connections"),
    (["--url", "http://x", "--get-paths", "a"], "must start with '/'"),
])
def test_bad_arguments(argv: list[str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        traffic.check_args(traffic.parse_args(argv))


def test_guard_refuses_unrouted_destination(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(traffic, "current_lab_netns", lambda: "")
    monkeypatch.setattr(traffic, "route_dev", lambda addr: "eth0")
    with pytest.raises(ValueError, match=r"refusing to send to 10\.1\.2\.3"):
        traffic.guard_destination("10.1.2.3")
    traffic.guard_destination("127.0.0.1")  # loopback is always allowed
    monkeypatch.setattr(traffic, "route_dev", lambda addr: "lc-t1-op")
    traffic.guard_destination("10.77.1.10")


def test_main_exits_2_on_refusal(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(traffic, "current_lab_netns", lambda: "")
    monkeypatch.setattr(traffic, "route_dev", lambda addr: "")
    assert traffic.main(["--url", "http://10.1.2.3", "--requests", "1"]) == 2


def test_request_specs_hosts_and_bodies() -> None:
    put = traffic.parse_request("put /api/items 1k chunked host=a.example")
    assert (put.method, put.uri, put.body_len, put.host, put.chunked) == (
        "PUT", "/api/items", 1024, "a.example", True)
    assert put.key() == "PUT /api/items 1024 host=a.example chunked" and put.sends_body
    get = traffic.parse_request("GET /static/app.js")
    assert get.key() == "GET /static/app.js 0" and not get.sends_body
    assert traffic.parse_request("POST /api/x").sends_body      # an empty body, framed
    for bad in ("GET", "GET api", "GET /x 12q", "1 /x"):
        with pytest.raises(ValueError, match="--request"):
            traffic.parse_request(bad)
    plan = traffic.with_hosts([get, put], ["a.example", "b.example"])
    assert [i.key() for i in plan] == [
        "GET /static/app.js 0 host=a.example", "GET /static/app.js 0 host=b.example",
        "PUT /api/items 1024 host=a.example chunked"]
    assert traffic.with_hosts([get], []) == [get]
    body = traffic.body_bytes(40, 7)
    assert body.startswith(b"b7-abc") and len(body) == 40 and body.isascii()
    assert traffic.body_bytes(0, 3) == b"" and traffic.body_bytes(2, 12) == b"b1"


def test_request_replaces_the_default_plan_in_check_args() -> None:
    a = traffic.parse_args(["--url", "http://x", "--request", "GET /api/a",
                            "--request", "POST /api/b 10", "--host-header", "a.example"])
    traffic.check_args(a)
    assert [i.key() for i in a.items] == ["GET /api/a 0", "POST /api/b 10"]
    assert a.hosts == ["a.example"]


def test_latency_percentiles_nearest_rank() -> None:
    assert traffic.percentiles([]) == {"p50": None, "p99": None, "p99.9": None, "max": None}
    ms = traffic.percentiles([i / 1000 for i in range(1, 1001)])   # 1 ms .. 1000 ms
    assert ms == {"p50": 500.0, "p99": 990.0, "p99.9": 999.0, "max": 1000.0}
    t = traffic.Tally()
    t.latencies.append(0.002)
    other = traffic.Tally()
    other.latencies.append(0.004)
    t.merge(other)
    s = traffic.summarize(t, traffic.build_plan(["/"], []), 1.0, {})
    assert s["latency_ms"] == {"p50": 2.0, "p99": 4.0, "p99.9": 4.0, "max": 4.0}
