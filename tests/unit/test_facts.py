"""Fact parsers against recorded outputs (tests/fixtures/facts/<fact>/<case>.out|.err|.rc).

Adding a regression case = adding files: `<case>.out` (stdout), `<case>.rc` (exit code),
optional `<case>.err` (stderr), `<case>.arg` (argument, e.g. the address for route_get) and
`<case>.expected.json` (the parsed value; regenerate with LABCTL_REGEN_FACTS=1 and review).
"""

from __future__ import annotations

import dataclasses
import enum
import ipaddress
import json
import os
from pathlib import Path
from typing import Any, Callable

import pytest

from labctl.facts import iptables, neigh, proc, routes, sockets, system
from labctl.facts.base import FactParseError
from labctl.transport.base import Result

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "facts"

PARSERS: dict[str, Callable[[Result, str], Any]] = {
    "python": lambda r, a: system.parse_python(r),
    "pypy": lambda r, a: system.parse_pypy(r),
    "cpus": lambda r, a: system.parse_cpus(r),
    "ssh_connection": lambda r, a: system.parse_ssh_connection(r),
    "iptables_version": lambda r, a: system.parse_iptables_version(r),
    "proc_values": lambda r, a: proc.parse_proc_values(r),
    "routes": lambda r, a: routes.parse_routes(r),
    "addrs": lambda r, a: routes.parse_addrs(r),
    "route_get": lambda r, a: routes.parse_route_get(ipaddress.IPv4Address(a), r),
    "iptables": lambda r, a: iptables.parse_iptables_result(r),
    "listeners": lambda r, a: sockets.parse_listeners(r),
    "neighbours": lambda r, a: neigh.parse_neighbours(r),
}


def jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, enum.Enum):
        return value.value
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def _read(case: Path, ext: str, default: str = "") -> str:
    p = case.with_suffix(ext)
    return p.read_text() if p.exists() else default


def load_case(case: Path) -> tuple[Result, str]:
    result = Result("recorded", (case.parent.name,), int(_read(case, ".rc", "0").strip()),
                    _read(case, ".out"), _read(case, ".err"))
    return result, _read(case, ".arg").strip()


CASES = sorted(FIXTURES.glob("*/*.out"))


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.stem}" for c in CASES])
def test_recorded_output_parses_as_expected(case: Path) -> None:
    parser = PARSERS[case.parent.name]
    result, arg = load_case(case)
    value = jsonable(parser(result, arg))
    expected_path = case.with_suffix(".expected.json")
    if os.environ.get("LABCTL_REGEN_FACTS") or not expected_path.exists():
        expected_path.write_text(json.dumps(value, indent=1, sort_keys=True) + "\n")
    assert value == json.loads(expected_path.read_text())


def parsed(fact: str, case: str) -> Any:
    result, arg = load_case(FIXTURES / fact / f"{case}.out")
    return PARSERS[fact](result, arg)


def test_proc_values_from_a_namespace() -> None:
    v = parsed("proc_values", "target-ns")
    assert v.ip_forward == 0
    assert v.conntrack.loaded and v.conntrack.max == 262144
    assert v.rp_filter == {"all": 1, "default": 0, "eth0": 0, "lo": 0}
    assert v.effective_rp_filter("eth0") == 1  # max(all, eth0)
    assert v.effective_rp_filter("nope") is None


def test_proc_values_without_conntrack_module() -> None:
    v = parsed("proc_values", "no-conntrack-loose")
    assert not v.conntrack.loaded
    assert v.ip_forward == 1
    assert v.effective_rp_filter("ens3") == 2


def test_routes_include_proto_252_and_default_gateway() -> None:
    rs = parsed("routes", "target-ns")
    ours = [r for r in rs if r.proto_number == 252]
    assert [str(r.dst) for r in ours] == ["10.79.249.0/24"]
    assert str(ours[0].gateway) == "10.77.249.30"
    assert str(routes.default_gateway(rs)) == "10.77.249.254"
    assert routes.default_gateway(parsed("routes", "assistant-ns")) is None
    assert any(r.table == "local" for r in rs)


def test_route_get_on_link_vs_gateway_vs_unreachable() -> None:
    assert parsed("route_get", "onlink").on_link
    via = parsed("route_get", "via-gateway")
    assert via.reachable and not via.on_link and str(via.gateway) == "10.77.249.254"
    assert not parsed("route_get", "unreachable").reachable


def test_addrs_and_interface_lookup() -> None:
    itfs = parsed("addrs", "target-ns")
    itf = routes.interface_with(itfs, ipaddress.IPv4Address("10.77.249.20"))
    assert itf is not None and itf.ifname == "eth0" and itf.up
    assert itf.mac is not None and len(itf.mac.split(":")) == 6  # the datalink next-hop MAC
    assert itfs[0].mac is None  # loopback: not an Ethernet address
    assert routes.interface_with(itfs, ipaddress.IPv4Address("10.1.1.1")) is None


def test_neighbours_keep_only_usable_macs() -> None:
    # recorded on online after one request to the target, plus an INCOMPLETE entry
    found = parsed("neighbours", "online-ns")
    assert [(str(n.dst), n.dev) for n in found] == [("10.77.3.20", "eth0")]
    assert neigh.neighbour_mac(found, ipaddress.IPv4Address("10.77.3.20"), "eth0") == \
        "22:97:a1:2f:03:b7"
    assert neigh.neighbour_mac(found, ipaddress.IPv4Address("10.77.3.20"), "eth1") is None
    assert neigh.neighbour_mac(found, ipaddress.IPv4Address("10.77.3.99"), "eth0") is None


def test_iptables_save_structure_and_labctl_objects() -> None:
    rs = parsed("iptables", "target-ns")
    assert set(rs.tables) == {"raw", "filter"}
    assert rs.chain("filter", "INPUT").policy == "ACCEPT"
    assert rs.rules("filter", "LABCTL-h4a") == (
        '-s 10.77.249.30/32 -p tcp -m tcp --sport 80 -m comment --comment "labctl:h4a:drop" '
        "-j DROP",
    )
    objs = rs.labctl_objects("h4a")
    assert "raw/LABCTL-h4a" in objs and "filter/LABCTL-h4a" in objs
    assert len(objs) == 6
    assert rs.labctl_objects("other") == []
    assert parsed("iptables", "assistant-empty").tables == {}


def test_iptables_normaliser_ignores_counters_comments_and_default_tables() -> None:
    text = (FIXTURES / "iptables" / "target-ns.out").read_text()
    noisy = "# Warning: legacy tables present\n" + text.replace("[0:0]", "[12:3456]")
    noisy += "*nat\n:PREROUTING ACCEPT [3:4]\n:INPUT ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n"
    noisy += ":POSTROUTING ACCEPT [0:0]\nCOMMIT\n"
    assert iptables.normalise_iptables_save(noisy) == iptables.normalise_iptables_save(text)
    assert "LABCTL-h4a" in iptables.normalise_iptables_save(text)
    assert iptables.normalise_iptables_save("") == ""
    empty_filter = (
        "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n"
    )
    assert iptables.normalise_iptables_save(empty_filter) == ""


@pytest.mark.parametrize("bad", ["-A INPUT -j DROP\n", "*filter\n:INPUT ACCEPT\n",
                                 "*filter\n-A NOPE -j DROP\nCOMMIT\n", "COMMIT\n"])
def test_iptables_parser_rejects_garbage(bad: str) -> None:
    with pytest.raises(FactParseError):
        iptables.parse_iptables_save(bad)


def test_listeners() -> None:
    ls = parsed("listeners", "target-ns")
    assert sockets.Listener("10.77.249.20", 8080) in ls
    assert sockets.Listener("*", 2222) in ls
    assert sockets.Listener("*", 2222).covers(ipaddress.IPv4Address("1.2.3.4"))
    assert not sockets.Listener("10.0.0.1", 1).covers(ipaddress.IPv4Address("10.0.0.2"))


def test_system_facts() -> None:
    py = parsed("python", "debian12")
    assert py.present and py.at_least(3, 9)
    assert not parsed("python", "absent-tool").present
    ssh = parsed("ssh_connection", "lab")
    assert str(ssh.client) == "10.77.1.1" and ssh.server_port == 22
    assert parsed("ssh_connection", "unset") is None
    assert parsed("iptables_version", "debian12-nft").backend == "nf_tables"
    assert parsed("iptables_version", "debian12-legacy").backend == "legacy"


@pytest.mark.parametrize(
    ("parser", "result"),
    [
        (routes.parse_routes, Result("h", ("ip",), 0, "{not json")),
        (routes.parse_routes, Result("h", ("ip",), 1, "", "Error: bad")),
        (neigh.parse_neighbours, Result("h", ("ip",), 0, '[{"dst": "x", "lladdr": "a"}]')),
        (proc.parse_proc_values, Result("h", ("grep",), 2, "", "grep: no such file")),
        (proc.parse_proc_values, Result("h", ("grep",), 0, "/proc/sys/x:abc\n")),
        (sockets.parse_listeners, Result("h", ("ss",), 0, "LISTEN 0\n")),
        (system.parse_ssh_connection, Result("h", ("printenv",), 0, "1.2.3.4 1\n")),
        (system.parse_python, Result("h", ("python3",), 0, "Jython\n")),
        (system.parse_uid, Result("h", ("id",), 0, "root\n")),
    ],
)
def test_parsers_raise_fact_parse_error_on_garbage(parser: Callable[[Result], Any],
                                                   result: Result) -> None:
    with pytest.raises(FactParseError):
        parser(result)


def test_a_pypy3_that_is_not_pypy_is_not_understood() -> None:
    """`pypy3` pointing at CPython (a local alias): the version line lacks `[PyPy X]`."""
    result = Result("h", ("pypy3", "--version"), 0, "Python 3.11.2\n")
    with pytest.raises(FactParseError, match="PyPy"):
        system.parse_pypy(result)


def test_cpus_must_be_a_positive_count() -> None:
    with pytest.raises(FactParseError, match="nproc"):
        system.parse_cpus(Result("h", ("nproc",), 0, "0\n"))
    with pytest.raises(FactParseError, match="nproc"):
        system.parse_cpus(Result("h", ("nproc",), 0, "two\n"))
