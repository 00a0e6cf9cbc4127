"""tcpcopy's address values (pure): ``-x`` transfers, the ``-c`` fake-client pool, ``-s``
intercept addresses; ``OptionsError`` is the one-line error every flag parser raises."""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Sequence, Tuple

from engine.packets import PacketError, ip_aton, mac_aton

MAX_INTERCEPTS = 32
MAX_FAKE_IPS = 4096


class OptionsError(ValueError):
    """Bad or contradictory command-line input; the message names the flag."""


@dataclass(frozen=True)
class Transfer:
    """One ``-x`` item: ``[onlineIP:]port[@mac]-targetIP:targetPort[@mac]`` (online_ip 0 = any)."""

    online_ip: int
    online_port: int
    target_ip: int
    target_port: int
    src_mac: Optional[bytes] = None
    target_mac: Optional[bytes] = None


def split_items(values: Sequence[str]) -> List[str]:
    return [item.strip() for v in values for item in v.split(",") if item.strip()]


def parse_port(text: str, flag: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise OptionsError(f"{flag}: bad port {text!r} (1-65535)")
    return port


def parse_ip(text: str, flag: str) -> int:
    try:
        return ip_aton(text)
    except PacketError:
        raise OptionsError(f"{flag}: bad IPv4 address {text!r}") from None


def _side(text: str, flag: str) -> Tuple[str, Optional[bytes]]:
    if "@" not in text:
        return text, None
    addr, mac = text.split("@", 1)
    try:
        return addr, mac_aton(mac)
    except PacketError:
        raise OptionsError(f"{flag}: bad MAC address {mac!r} in {text!r}") from None


def parse_transfer(item: str) -> Transfer:
    """``[onlineIP:]port[@mac]-targetIP:targetPort[@mac]``."""
    if item.count("-") != 1:
        raise OptionsError(f"-x: expected [onlineIP:]port-targetIP:targetPort, got {item!r}")
    left, right = item.split("-")
    left, src_mac = _side(left, "-x")
    right, dst_mac = _side(right, "-x")
    online_ip = 0
    if ":" in left:
        ip_text, port_text = left.rsplit(":", 1)
        online_ip = parse_ip(ip_text, "-x")
    else:
        port_text = left
    if ":" not in right:
        raise OptionsError(f"-x: target must be targetIP:targetPort in {item!r}")
    tip, tport = right.rsplit(":", 1)
    return Transfer(online_ip, parse_port(port_text, "-x"), parse_ip(tip, "-x"),
                    parse_port(tport, "-x"), src_mac, dst_mac)


def parse_fake_ips(items: Sequence[str], skip: Sequence[int] = ()) -> List[int]:
    """``-c`` items: addresses or ``a.b.c.x`` (= .1-.254); addresses in ``skip`` are left out."""
    out: List[int] = []
    for item in items:
        if "*" in item:
            raise OptionsError(f"-c: use x instead of * in {item!r}")
        if item.endswith(".x"):
            base = parse_ip(item[:-2] + ".0", "-c")
            out.extend(base + i for i in range(1, 255))
        else:
            out.append(parse_ip(item, "-c"))
    seen = set(skip)
    result = []
    for ip in out:
        if ip not in seen:
            seen.add(ip)
            result.append(ip)
    if len(result) > MAX_FAKE_IPS:
        raise OptionsError(f"-c: {len(result)} addresses, at most {MAX_FAKE_IPS}")
    if items and not result:
        raise OptionsError("-c: no usable address (all equal to a -x target)")
    return result


def parse_intercepts(items: Sequence[str], default_port: int) -> List[Tuple[str, int]]:
    out = []
    for item in items:
        host, _, port = item.partition(":")
        parse_ip(host, "-s")
        out.append((host, parse_port(port, "-s") if port else default_port))
    if len(out) > MAX_INTERCEPTS:
        raise OptionsError(f"-s: {len(out)} intercepts, at most {MAX_INTERCEPTS}")
    return out
