"""Classic BPF programs for the capture sockets (pure, stdlib only) and a tiny interpreter.

Shape: a program is a list of ``(code, jt, jf, k)`` tuples, the layout of Linux
``struct sock_filter``; ``rawsock.attach_filter`` packs and attaches it.

- ``tcp_port_filter(ports, hosts, direction="dst"|"src")`` builds "IPv4 TCP, <dir> port in
  PORTS [and <dir> host in HOSTS]" for Ethernet frames, optionally 802.1Q-tagged (VLAN tag left
  in the frame), honouring the IP header length (``ldxb 4*([off]&0xf)``) and rejecting non-first
  fragments. tcpcopy uses direction "dst" (client -> online), intercept "src" (target -> client).
- ``compile_expression(expr)``: a user ``-F`` expression is compiled by the system tcpdump
  (``tcpdump -ddd`` against an empty Ethernet pcap, so no interface is opened). If tcpdump is
  not installed, ``BpfError`` says so: install tcpdump or drop ``-F`` to use the built-in filter.
- ``residue_filter(program, modulus, residue)``: ``program`` narrowed to frames whose TCP/UDP
  destination port ``% modulus == residue`` (intercept ``--workers M``: worker j only sees the
  responses to the fake ports of its class; ``BPF_ALU|BPF_MOD``, Linux >= 3.7).
- ``drop_outgoing(program)``: ``program`` behind a first check of the packet type (the
  ``SKF_AD_PKTTYPE`` ancillary load) that rejects frames this host sends: a socket in a
  PACKET_FANOUT group is not covered by its own ``PACKET_IGNORE_OUTGOING`` (the group's hook
  is), so tcpcopy's workers would capture their own copies without it.
- ``run_filter(program, frame, pkttype=0) -> int``: a pure-Python classic-BPF interpreter
  (kernel semantics: out-of-bounds loads reject) used by the unit tests and for diagnostics.
"""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
import tempfile
from typing import Dict, Iterable, List, Optional, Sequence, Tuple, Union

Insn = Tuple[int, int, int, int]

# opcode pieces (linux/filter.h)
LD, LDX, ST, STX, ALU, JMP, RET, MISC = 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07
W, H, B = 0x00, 0x08, 0x10
IMM, ABS, IND, MEM, LEN, MSH = 0x00, 0x20, 0x40, 0x60, 0x80, 0xA0
JA, JEQ, JGT, JGE, JSET = 0x00, 0x10, 0x20, 0x30, 0x40
K, X = 0x00, 0x08
RET_A = 0x10
TAX, TXA = 0x00, 0x80
SUB, AND_, RSH, MOD = 0x10, 0x50, 0x70, 0x90
TCP_FIN_SYN_RST = 0x07
ACCEPT = 262144          # snap length returned on accept
MAX_JUMP = 255
SKF_AD_PKTTYPE = 0xFFFFF000 + 4     # ancillary load: the sll_pkttype of the frame
PACKET_OUTGOING = 4


class BpfError(ValueError):
    """A filter cannot be built or compiled; the message says why and what to do."""


class _Label:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name


_Item = Union[Tuple[int, Union[int, str], Union[int, str], int], _Label]


def _assemble(items: Sequence[_Item]) -> List[Insn]:
    """Resolve symbolic jump targets (label names) into relative offsets."""
    where: Dict[str, int] = {}
    insns: List[Tuple[int, Union[int, str], Union[int, str], int]] = []
    for it in items:
        if isinstance(it, _Label):
            where[it.name] = len(insns)
        else:
            insns.append(it)
    out: List[Insn] = []
    for pc, (code, jt, jf, k) in enumerate(insns):
        rel = [where[j] - pc - 1 if isinstance(j, str) else j for j in (jt, jf)]
        if any(not 0 <= r <= MAX_JUMP for r in rel):
            raise BpfError("filter too large (a jump over 255 instructions): list fewer ports")
        out.append((code, rel[0], rel[1], k))
    return out


def _l3_block(base: int, ports: Sequence[int], hosts: Sequence[int], src: bool,
              tag: str, skip_pure_acks: bool = False) -> List[_Item]:
    host_off = base + (12 if src else 16)
    port_off = base + (0 if src else 2)
    items: List[_Item] = [
        (LD | B | ABS, 0, "reject", base + 9), (JMP | JEQ | K, 0, "reject", 6),
        (LD | H | ABS, 0, 0, base + 6), (JMP | JSET | K, "reject", 0, 0x1FFF),
    ]
    if hosts:
        items.append((LD | W | ABS, 0, 0, host_off))
        for i, h in enumerate(hosts):
            last = i == len(hosts) - 1
            items.append((JMP | JEQ | K, f"{tag}ports", "reject" if last else 0, h))
    items.append(_Label(f"{tag}ports"))
    items.append((LDX | B | MSH, 0, 0, base))
    items.append((LD | H | IND, 0, 0, port_off))
    match = f"{tag}acks" if skip_pure_acks else "accept"
    for i, p in enumerate(ports):
        last = i == len(ports) - 1
        items.append((JMP | JEQ | K, match, "reject" if last else 0, p))
    if skip_pure_acks:
        # accept SYN/FIN/RST, else only segments with payload: ip_len - 4*ihl - 4*doff > 0
        items += [
            _Label(f"{tag}acks"),
            (LD | B | IND, 0, 0, base + 13), (JMP | JSET | K, "accept", 0, TCP_FIN_SYN_RST),
            (LD | H | ABS, 0, 0, base + 2), (ALU | SUB | X, 0, 0, 0), (ST, 0, 0, 0),
            (LD | B | IND, 0, 0, base + 12), (ALU | AND_ | K, 0, 0, 0xF0),
            (ALU | RSH | K, 0, 0, 2), (MISC | TAX, 0, 0, 0), (LD | MEM, 0, 0, 0),
            (JMP | JGT | X, "accept", "reject", 0),
        ]
    return items


def tcp_port_filter(ports: Iterable[int], hosts: Iterable[int] = (),
                    direction: str = "dst", skip_pure_acks: bool = False) -> List[Insn]:
    """IPv4 TCP with <direction> port in ports [and <direction> host in hosts] (hosts as ints).
    ``skip_pure_acks``: also reject segments without payload and without SYN/FIN/RST."""
    plist = sorted(set(ports))
    hlist = sorted(set(hosts))
    if direction not in ("dst", "src"):
        raise BpfError(f"direction must be 'dst' or 'src', not {direction!r}")
    if not plist or any(not 0 < p < 65536 for p in plist):
        raise BpfError(f"ports must be 1..65535, got {plist}")
    src = direction == "src"
    items: List[_Item] = [
        (LD | H | ABS, 0, 0, 12),
        (JMP | JEQ | K, "ip", 0, 0x0800),
        (JMP | JEQ | K, 0, "reject", 0x8100),
        (LD | H | ABS, 0, 0, 16),
        (JMP | JEQ | K, "vlan", "reject", 0x0800),
        _Label("ip"),
        *_l3_block(14, plist, hlist, src, "p", skip_pure_acks),
        _Label("vlan"),
        *_l3_block(18, plist, hlist, src, "v", skip_pure_acks),
        _Label("accept"), (RET | K, 0, 0, ACCEPT),
        _Label("reject"), (RET | K, 0, 0, 0),
    ]
    return _assemble(items)


def drop_outgoing(program: Sequence[Insn]) -> List[Insn]:
    """``program`` for frames not sent by this host (pkttype != PACKET_OUTGOING)."""
    return [(LD | W | ABS, 0, 0, SKF_AD_PKTTYPE), (JMP | JEQ | K, 0, 1, PACKET_OUTGOING),
            (RET | K, 0, 0, 0), *program]


def with_snap(program: Sequence[Insn], snap: int) -> List[Insn]:
    """``program``, keeping at most ``snap`` bytes of each frame it accepts (every accepting
    ``ret #k`` returns ``min(k, snap)``): the kernel then queues only the headers. A program
    that returns a computed length (``ret a``) is refused."""
    if snap <= 0:
        raise BpfError(f"snap length {snap} must be > 0")
    if any(code & 0x07 == RET and code & 0x18 == RET_A for code, _jt, _jf, _k in program):
        raise BpfError("this filter returns a computed length; it cannot be cut to headers")
    return [(code, jt, jf, min(k, snap)) if code & 0x07 == RET else (code, jt, jf, k)
            for code, jt, jf, k in program]


def residue_filter(program: Sequence[Insn], modulus: int, residue: int) -> List[Insn]:
    """``program``, but a frame it accepts is kept only when its IPv4 TCP/UDP destination port
    ``% modulus == residue`` (Ethernet, optionally one 802.1Q tag; a frame too short for the
    port is rejected). Every accepting ``ret #k`` becomes a jump to that check (so the jumps
    of ``program`` keep their offsets); ``modulus`` 1 returns ``program`` unchanged."""
    if modulus <= 1:
        return list(program)
    if not 0 <= residue < modulus:
        raise BpfError(f"residue {residue} is not in 0..{modulus - 1}")
    if any(code & 0x07 == RET and code & 0x18 == RET_A for code, _jt, _jf, _k in program):
        raise BpfError("this filter returns a computed length; it cannot be split over workers")
    snap = max((k for code, _jt, _jf, k in program if code & 0x07 == RET), default=0) or ACCEPT
    end = len(program)
    out: List[Insn] = []
    for pc, (code, jt, jf, k) in enumerate(program):
        if code & 0x07 == RET and k:
            out.append((JMP | JA, 0, 0, end - pc - 1))
        else:
            out.append((code, jt, jf, k))
    check: List[_Item] = [
        (LD | H | ABS, 0, 0, 12),
        (JMP | JEQ | K, "ip", 0, 0x0800),
        (JMP | JEQ | K, 0, "reject", 0x8100),
        (LD | H | ABS, 0, 0, 16),
        (JMP | JEQ | K, "vlan", "reject", 0x0800),
        _Label("ip"), (LDX | B | MSH, 0, 0, 14), (LD | H | IND, 0, 0, 16),
        (JMP | JA, 0, 0, 2),
        _Label("vlan"), (LDX | B | MSH, 0, 0, 18), (LD | H | IND, 0, 0, 20),
        (ALU | MOD | K, 0, 0, modulus),
        (JMP | JEQ | K, 0, "reject", residue),
        (RET | K, 0, 0, snap),
        _Label("reject"), (RET | K, 0, 0, 0),
    ]
    return out + _assemble(check)


# ---------------------------------------------------------------- -F expressions


def simple_expression(expr: str) -> Optional[List[Insn]]:
    """Our own program for the common ``[ip and] tcp and (src|dst) port N [and (src|dst) host A]``
    forms (one direction), so they need no tcpdump; None for anything else."""
    terms = [t.split() for t in f" {expr.strip()} ".split(" and ")]
    direction: Optional[str] = None
    ports: List[int] = []
    hosts: List[int] = []
    seen_tcp = False
    for words in terms:
        if words in (["tcp"], ["ip"]):
            seen_tcp = seen_tcp or words == ["tcp"]
            continue
        if len(words) != 3 or words[0] not in ("src", "dst") or words[1] not in ("port", "host"):
            return None
        if direction not in (None, words[0]):
            return None
        direction = words[0]
        try:
            if words[1] == "port":
                ports.append(int(words[2]))
            else:
                hosts.append(int.from_bytes(bytes(int(o) for o in words[2].split(".")), "big"))
        except ValueError:
            return None
        if words[1] == "host" and len(words[2].split(".")) != 4:
            return None
    if not seen_tcp or direction is None or len(ports) != 1 or len(hosts) > 1:
        return None
    return tcp_port_filter(ports, hosts, direction)


def filter_for_expression(expr: str) -> List[Insn]:
    """A ``-F`` expression as a program: the built-in generator when it can, else tcpdump."""
    return simple_expression(expr) or compile_expression(expr)



def parse_ddd(text: str) -> List[Insn]:
    """Parse ``tcpdump -ddd`` output: a count line then ``code jt jf k`` decimal lines."""
    lines = [ln.split() for ln in text.strip().splitlines() if ln.strip()]
    try:
        count = int(lines[0][0])
        prog = [(int(a), int(b), int(c), int(d) & 0xFFFFFFFF) for a, b, c, d in lines[1:]]
    except (IndexError, ValueError):
        raise BpfError(f"unexpected tcpdump -ddd output: {text[:80]!r}") from None
    if count != len(prog) or not prog:
        raise BpfError(f"tcpdump -ddd said {count} instructions, gave {len(prog)}")
    return prog


def compile_expression(expr: str, tcpdump: Optional[str] = None) -> List[Insn]:
    """Compile a pcap filter expression for Ethernet frames with the system tcpdump."""
    exe = tcpdump or shutil.which("tcpdump") or (
        "/usr/sbin/tcpdump" if os.path.exists("/usr/sbin/tcpdump") else None)
    if exe is None:
        raise BpfError(f"-F {expr!r}: compiling a filter expression needs tcpdump, which is not "
                       "installed; install tcpdump or omit -F to use the built-in filter")
    with tempfile.NamedTemporaryFile(suffix=".pcap") as empty:
        empty.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        empty.flush()
        try:
            proc = subprocess.run([exe, "-ddd", "-r", empty.name, expr], capture_output=True,
                                  text=True, timeout=20, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise BpfError(f"-F {expr!r}: running tcpdump failed: {exc}") from None
    if proc.returncode != 0:
        msg = (proc.stderr.strip().splitlines() or ["failed"])[-1]
        raise BpfError(f"-F {expr!r}: {msg}")
    return parse_ddd(proc.stdout)


# ---------------------------------------------------------------- interpreter


def _load(frame: bytes, off: int, size: int) -> Optional[int]:
    if off < 0 or off + size > len(frame):
        return None
    return int.from_bytes(frame[off:off + size], "big")


_SIZES = {W: 4, H: 2, B: 1}
_ALU = {
    0x00: lambda a, b: a + b, 0x10: lambda a, b: a - b, 0x20: lambda a, b: a * b,
    0x30: lambda a, b: a // b if b else None, 0x40: lambda a, b: a | b, 0x50: lambda a, b: a & b,
    0x60: lambda a, b: a << b if b < 32 else 0, 0x70: lambda a, b: a >> b if b < 32 else 0,
    0x90: lambda a, b: a % b if b else None, 0xA0: lambda a, b: a ^ b,
}


def run_filter(program: Sequence[Insn], frame: bytes, max_steps: int = 4096,
               pkttype: int = 0) -> int:
    """Run a classic BPF program over ``frame``; returns the accept length (0 = reject).
    ``pkttype``: what the ``SKF_AD_PKTTYPE`` ancillary load gives (0: to this host)."""
    a = x = pc = 0
    mem = [0] * 16
    for _ in range(max_steps):
        if pc >= len(program):
            return 0
        code, jt, jf, k = program[pc]
        cls = code & 0x07
        pc += 1
        if cls == RET:
            return a if code & 0x18 == RET_A else k
        if cls == LD:
            mode, size = code & 0xE0, _SIZES.get(code & 0x18, 4)
            val: Optional[int]
            if mode == IMM:
                val = k
            elif mode == LEN:
                val = len(frame)
            elif mode == MEM:
                val = mem[k & 15]
            elif mode == ABS and k == SKF_AD_PKTTYPE:
                val = pkttype
            else:
                val = _load(frame, k + (x if mode == IND else 0), size)
            if val is None:
                return 0
            a = val
        elif cls == LDX:
            mode = code & 0xE0
            if mode == MSH:
                b = _load(frame, k, 1)
                if b is None:
                    return 0
                x = (b & 0xF) * 4
            else:
                x = k if mode == IMM else len(frame) if mode == LEN else mem[k & 15]
        elif cls == ST:
            mem[k & 15] = a
        elif cls == STX:
            mem[k & 15] = x
        elif cls == ALU:
            op = code & 0xF0
            if op == 0x80:
                a = -a & 0xFFFFFFFF
                continue
            fn = _ALU.get(op)
            res = fn(a, x if code & X else k) if fn else None
            if res is None:
                return 0
            a = res & 0xFFFFFFFF
        elif cls == JMP:
            op, operand = code & 0xF0, (x if code & X else k)
            if op == JA:
                pc += k
                continue
            hit = {JEQ: a == operand, JGT: a > operand, JGE: a >= operand,
                   JSET: bool(a & operand)}.get(op)
            if hit is None:
                return 0
            pc += jt if hit else jf
        else:  # MISC
            if code & 0xF8 == TXA:
                a = x
            else:
                x = a
    return 0
