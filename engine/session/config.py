"""Configuration, counters and address mapping for the session emulator (pure, no I/O).

- ``Route``: one ``-x`` item (online ip/port -> target ip/port, optional MACs for ``-o``).
- ``SessionConfig``: every knob of the emulator, with the tcpcopy defaults.
- ``COUNTERS``: the loss/activity counter names (snake_case forms of study §6 plus new ones).
- ``AddressMapper``: ``-c`` sticky round-robin mapping, ``-f``/``-n`` port shifts, and a
  collision-free allocator of fake (ip, port) tuples; with ``--workers N`` worker k only ever
  uses ports with ``port % N == k`` (``set_worker``), so no two workers share a tuple.
- ``sample_keep``: deterministic ``-r`` sampling per (client ip, port).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Set

from engine.http.select import Selection

COUNTERS = (
    "captured", "kernel_drops", "malformed", "frag", "filtered", "sampled_out",
    "clt_syn", "clt_packs", "clt_cont", "clt_con_retrans", "clt_no_session", "clt_dropped",
    "clt_gap", "clt_gap_resync", "clt_rst_ignored", "sessions_created", "sessions_released",
    "sessions_obsolete",
    # a client port reused while the copy of its last connection still held client bytes:
    # that copy sends them on its own fake tuple before it ends (engine.session.admit)
    "sessions_drained",
    "sessions_time_wait", "sessions_shed", "sessions_no_synack", "sessions_timeout",
    "sessions_no_intercept", "conns", "resp", "resp_cont", "resp_fin", "resp_rst",
    "resp_unknown", "resp_stale", "sent", "sent_content", "sent_syn", "sent_fin", "sent_rst",
    "sent_ack", "reconnect", "recon_for_no_syn", "retransmit", "retrans_succ", "send_errors",
    "requests_sent", "pacing_fast", "pacing_timer", "pacing_lag", "tuple_remapped", "tuple_refused",
    "win_zero", "buffer_overflow", "memory_shed", "table_full", "channel_malformed",
    "channel_reconnects",
    # the target's own failures: a RST to our SYN (nothing listens), sessions that ended so,
    # a RST mid-session, a repeated SYN-ACK (our ACK lost, or its accept queue full)
    "target_refused", "sessions_refused", "target_resets", "synack_retrans",
    # sends the local stack refused (EPERM from a firewall): retried like a wire loss
    "send_retried",
    # a copy whose target closed it, started again for the client's next request while the
    # other copies of that connection (-n, several targets) went on
    "sessions_revived",
    # an intercept outage (-L): sessions held while no intercept was connected, those resumed
    # when one was back, those given up after --hold-timeout (engine.session.hold)
    "sessions_held", "sessions_resumed", "sessions_hold_expired",
    # a target that stopped answering (engine.session.stall): new sessions refused while it is
    # silent, sessions shed that held client bytes for it
    "target_stalled", "sessions_stall_shed",
)
#: with a selection (``--allow-path`` & co.): requests copied / left out, connections whose
#: rest could not be framed or that were not HTTP/1.x, connections never opened at the target
SELECT_COUNTERS = ("requests_selected", "requests_skipped", "streams_unparsable",
                   "streams_non_http", "sessions_unselected")

MAX_PORT_TRIES = 4096
M32 = 0xFFFFFFFF
HALF = 1 << 31
RST_WINDOW = 1 << 16        # a client RST further than this past ``expect`` is not believed
SESSION_OVERHEAD = 3072          # bytes per session counted against -m besides its buffers
#                                  (tracemalloc: ~2.7 kB per SYN-only session, 20k sessions)
STALL_HOLD = 1 << 20             # what tcpcopy holds for a silent target may grow this much
#                                  before it counts as stalled (engine.session.stall)
OOO_MAX = 1024              # out-of-order client segments parked per connection


class Route:
    """One ``-x`` item. ``online_ip`` 0 matches any destination address."""

    __slots__ = ("index", "online_ip", "online_port", "src_mac", "target_ip", "target_mac",
                 "target_port")

    def __init__(self, online_ip: int, online_port: int, target_ip: int, target_port: int,
                 src_mac: Optional[bytes] = None, target_mac: Optional[bytes] = None,
                 index: int = 0) -> None:
        self.online_ip, self.online_port = online_ip, online_port
        self.target_ip, self.target_port = target_ip, target_port
        self.src_mac, self.target_mac, self.index = src_mac, target_mac, index

    def __repr__(self) -> str:
        return (f"Route({self.online_ip:#x}:{self.online_port} -> "
                f"{self.target_ip:#x}:{self.target_port})")


class SessionConfig:
    """Emulator knobs; times in seconds, sizes in bytes. Defaults follow tcpcopy's."""

    __slots__ = (
        "ack_delay",
        "close_wait",
        "eor_lag",
        "eor_max",
        "eor_min",
        "fake_ips",
        "handshake_timeout",
        "hold_timeout",
        "keepalive_timeout",
        "max_sessions",
        "memory_limit",
        "mss",
        "mtu",
        "no_wait",
        "only_full",
        "port_shift",
        "record_drops",
        "replicas",
        "resp_wait",
        "routes",
        "rto_max",
        "rto_min",
        "rtt_default",
        "sample_pct",
        "selection",
        "session_buffer_bytes",
        "session_timeout",
        "stall_hold",
        "target_stall",
        "time_wait",
    )

    def __init__(self, routes: List[Route], *, fake_ips: Optional[List[int]] = None,
                 replicas: int = 1, port_shift: int = 0, sample_pct: int = 0,
                 session_timeout: float = 600.0, keepalive_timeout: Optional[float] = None,
                 mtu: int = 1500, mss: int = 1460, only_full: bool = False,
                 no_wait: bool = False, max_sessions: int = 65536,
                 session_buffer_bytes: int = 16 * 1024 * 1024,
                 memory_limit: int = 2048 * 1024 * 1024, handshake_timeout: float = 3.0,
                 time_wait: float = 2.0, close_wait: float = 5.0, rto_min: float = 0.2,
                 rto_max: float = 3.0, eor_min: float = 0.005, eor_max: float = 0.05,
                 resp_wait: float = 2.0, rtt_default: float = 0.005, ack_delay: float = 0.02,
                 eor_lag: float = 0.25, record_drops: bool = False,
                 selection: Optional[Selection] = None, hold_timeout: float = 0.0,
                 target_stall: float = 0.0, stall_hold: int = STALL_HOLD) -> None:
        self.routes = routes
        self.fake_ips = list(fake_ips or [])
        self.replicas = max(1, replicas)
        self.port_shift, self.sample_pct = port_shift, sample_pct
        self.session_timeout = session_timeout
        self.keepalive_timeout = (session_timeout + 120.0 if keepalive_timeout is None
                                  else keepalive_timeout)
        self.mtu, self.mss, self.only_full, self.no_wait = mtu, mss, only_full, no_wait
        self.max_sessions, self.session_buffer_bytes = max_sessions, session_buffer_bytes
        self.memory_limit, self.handshake_timeout = memory_limit, handshake_timeout
        self.time_wait, self.close_wait = time_wait, close_wait
        self.rto_min, self.rto_max, self.eor_min, self.eor_max = rto_min, rto_max, eor_min, eor_max
        self.resp_wait, self.rtt_default, self.record_drops = resp_wait, rtt_default, record_drops
        self.ack_delay = ack_delay
        # quiet period before giving up on a target response shorter than the online one
        # (longer than the target's minimum RTO, 200 ms, so a stalled bulk response is waited for)
        self.eor_lag = eor_lag
        # how long sessions are held while no intercept is connected (0: new sessions are
        # refused then, as without -L; engine.session.hold)
        self.hold_timeout = hold_timeout
        # seconds of target silence (requests unanswered) before new sessions are refused and
        # what waits on it is shed (0: never; engine.session.stall)
        self.target_stall = target_stall
        # ... and only once what is held for it (sessions and their bytes) grew by this much
        # since the silence began: a slow target answering a few requests late is not one
        self.stall_hold = stall_hold
        # per-request selection; None when no rule could skip anything (the emulator then
        # never frames: today's path, at today's cost)
        self.selection = (None if selection is None or selection.selects_everything
                          else selection)


M64 = 0xFFFFFFFFFFFFFFFF


def sample_keep(saddr: int, sport: int, pct: int) -> bool:
    """Deterministic per (ip, port): keep about pct % of sessions (0 or >= 100 keeps all).

    Deliberate deviation from the C tool (study §3.2 step 5), which keeps a session when the
    folded byte sum of source ip + port, mod 100, is below pct: over the consecutive ephemeral
    ports of one client that sum walks through a few residues in long runs, so one run of
    3,000 connections at ``-r 30`` kept 36 % (0.72 copies per request with ``-n 2``). Here
    (ip, port) goes through the splitmix64 finaliser (a bijective 64-bit mixer), so any window
    of consecutive ports, and any set of clients, samples within a few points of pct; a
    session kept at pct stays kept at any higher pct. Called once per new session (~1 us)."""
    if pct <= 0 or pct >= 100:
        return True
    x = (saddr << 16) | sport
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & M64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & M64
    return (x ^ (x >> 31)) % 100 < pct


def _wrap_port(port: int) -> int:
    return port if port < 65536 else 1024 + (port - 65536) % 64512


def residue_port(port: int, index: int, count: int) -> int:
    """The port nearest to ``port`` (1..65535) with ``port % count == index`` (ties: upward)."""
    if count <= 1:
        return port
    up = port + (index - port) % count
    down = up - count if up != port else up
    if up > 65535 or (down >= 1 and port - down < up - port):
        return down
    return up


class AddressMapper:
    """Maps a real client (ip, port, replica) to a unique fake (ip, port) tuple.

    The fake IP is sticky per real client IP (and replica) and assigned round-robin over the
    ``-c`` pool; the preferred port is the client's port shifted by ``-f``/``-n`` (and, for a
    worker of ``--workers N``, moved to the nearest port of its residue class). If that tuple
    is in use by another live session, nearby ports of the same class (then other pool IPs)
    are tried; a tuple that cannot be found is refused (the caller counts it).
    """

    def __init__(self, pool: List[int], port_shift: int = 0, rand_shift: int = 0) -> None:
        self.pool = pool
        self.rand_shift = rand_shift & 511
        self.f_add = ((port_shift & 0xFF) << 11) + self.rand_shift if port_shift else 0
        self._sticky: Dict[int, int] = {}
        self._next = 0
        self.used: Set[int] = set()
        self.worker, self.workers = 0, 1
        # the fallback search walks the ports first + i * count (i < span) of the class
        self._first, self._span, self._step = 1024, 64512, 97

    def set_worker(self, index: int, count: int) -> None:
        """This process is worker ``index`` of ``count``: every port it hands out from now on
        satisfies ``port % count == index`` (the classes of two workers never meet)."""
        if not 0 <= index < count:
            raise ValueError(f"worker {index} of {count}")
        self.worker, self.workers = index, count
        self._first = 1024 + (index - 1024) % count
        self._span = (65535 - self._first) // count + 1
        self._step = 97 if self._span % 97 else 89

    def fake_ip(self, client_ip: int, replica: int) -> int:
        if not self.pool:
            return client_ip
        key = (((client_ip + (client_ip >> 16)) & 0xFFFF) << 10) | (replica & 0x3FF)
        ip = self._sticky.get(key)
        if ip is None:
            ip = self.pool[self._next % len(self.pool)]
            self._next += 1
            self._sticky[key] = ip
        return ip

    def preferred_port(self, client_port: int, replica: int) -> int:
        add = self.f_add
        if replica:
            add += ((2 * replica - 1) << 5) + self.rand_shift
        port = _wrap_port(client_port + add) if add else client_port
        if self.workers > 1:
            return residue_port(port, self.worker, self.workers)
        return port

    def allocate(self, client_ip: int, client_port: int, replica: int) -> Optional[int]:
        """A free fake key ``(ip << 16) | port`` (now marked used), or None if none is free."""
        ip = self.fake_ip(client_ip, replica)
        port = self.preferred_port(client_port, replica)
        key = (ip << 16) | port
        used = self.used
        if key not in used:
            used.add(key)
            return key
        ips = [ip] + [p for p in self.pool if p != ip]
        first, span, step, count = self._first, self._span, self._step, self.workers
        start = (port - first) // count
        for cand_ip in ips:
            for i in range(1, MAX_PORT_TRIES):
                cand = (cand_ip << 16) | (first + count * ((start + i * step) % span))
                if cand not in used:
                    used.add(cand)
                    return cand
        return None

    def release(self, key: int) -> None:
        self.used.discard(key)
