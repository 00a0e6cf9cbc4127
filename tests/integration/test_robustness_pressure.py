"""P1/P3/P4: tcpcopy under pressure never exits, stays bounded, counts, and recovers (root).

- P1: a flood of ~30,000 SYNs from many fake client tuples (raw socket in the client namespace;
  TCP checksum 0, so online's kernel silently discards them and no client RST ever ends a copy
  session: the worst case for the table) against ``--max-sessions 2000``: sessions are shed
  as ``table_full``, the table never exceeds the cap, VmRSS stays under ``RSS_CAP_KB``.
- P3: the target's nginx is SIGSTOPped (master from its pidfile, workers by ``ps --ppid``) for
  4 s during traffic: RSS bounded, tcpcopy alive, new requests copied < 10 s after SIGCONT.
- P4: an iptables DROP in online's OUTPUT for the copied flow makes every raw send fail with
  EPERM: ``send_errors`` counted, tcpcopy alive; copying resumes when the rule is removed.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
import time
from typing import List

import pytest

from tests.integration.copyrig import Rig, fidelity, log_requests, settle, wait_for

pytestmark = pytest.mark.integration

RSS_CAP_KB = 160 * 1024           # the stated bound for a tcpcopy under these floods

SYN_FLOOD = r"""
import socket, struct, sys, time
dst, prefix, n, secs = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
d = socket.inet_aton(dst)
t0 = time.monotonic()
for i in range(n):
    src = socket.inet_aton(prefix + str(11 + i % 9))
    sport = 1024 + i // 9
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, i & 0xFFFF, 0x4000, 64, 6, 0, src, d)
    tcp = struct.pack("!HHIIBBHHH", sport, 80, i * 7919, 0, 0x50, 0x02, 29200, 0, 0)
    s.sendto(ip + tcp, (dst, 0))
    if i % 1000 == 999:                      # pace to ~n/secs packets per second
        ahead = t0 + secs * (i + 1) / n - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
print(n)
"""


class RssSampler:
    """Peak and last VmRSS (kB) of one pid, sampled every 0.1 s in a thread."""

    def __init__(self, pid: int) -> None:
        self.pid, self.peak, self.samples = pid, 0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def now(self) -> int:
        try:
            with open(f"/proc/{self.pid}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.now())
            self.samples += 1
            self._stop.wait(0.1)

    def stop(self) -> int:
        self._stop.set()
        self._thread.join(5)
        return self.peak


def _pid(rig: Rig, name: str = "tcpcopy") -> int:
    return int((rig.dir / f"{name}.pid").read_text())


def _copied_uri(rig: Rig, uri: str) -> int:
    return sum(n for (m, u, _l), n in rig.target_copies().items() if u.startswith(uri))


def test_p1_syn_flood_sheds_sessions_and_rss_stays_bounded(rig: Rig) -> None:
    rig.route_pool_via_assistant()
    rig.start_intercept()
    rig.start_tcpcopy(["--max-sessions", "2000", "-m", "256", "-t", "120"])
    proc = rig.procs[-1]
    rss = RssSampler(_pid(rig))
    base_rss = rss.now()
    flood = rig.ns("client", [sys.executable, "-c", SYN_FLOOD, rig.online,
                              f"10.78.{rig.lab.index}.", "30000", "4"])
    assert flood.stdout.strip() == "30000", flood.stderr
    c = wait_for(lambda: (lambda s: s if s.get("clt_syn", 0) + s.get("kernel_drops", 0)
                          >= 29000 else None)(rig.stats("tcpcopy").get("counters", {})),
                 20, "the flood captured or counted as kernel drops")
    time.sleep(1.0)
    st = rig.stats("tcpcopy")
    c = st["counters"]
    peak = rss.stop()
    print(f"P1 rss base={base_rss} kB peak={peak} kB samples={rss.samples} "
          f"active={st['sessions_active']} counters={c}")
    assert proc.poll() is None and st["state"] == "running"
    assert st["sessions_active"] <= 2000, st["sessions_active"]
    assert c["sessions_created"] <= 2000 + c["sessions_released"], c
    assert c["table_full"] >= 30000 - 2000 - c["kernel_drops"] - 1000, c
    assert peak < RSS_CAP_KB, (peak, base_rss)
    # still copying real traffic afterwards (the flood's sessions hold the table until -t,
    # so only a cap-sized table with room would copy: check liveness of capture instead)
    before = c["captured"]
    res = rig.traffic("--requests", "20", "--mode", "new", "--get-paths", "/?p1")
    assert not res.get("errors"), res
    wait_for(lambda: rig.stats("tcpcopy")["counters"]["captured"] >= before + 60, 10,
             "tcpcopy still capturing after the flood")


def _stall(rig: Rig) -> List[int]:
    master = int((rig.lab.host("target").dir / "nginx.pid").read_text())
    kids = rig.ns("target", ["ps", "-o", "pid=", "--ppid", str(master)], check=False).stdout
    pids = [master, *(int(p) for p in kids.split())]
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    return pids


def _resume(pids: List[int]) -> None:
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)


def test_p3_target_stall_keeps_rss_flat_and_copying_resumes(rig: Rig) -> None:
    rig.route_pool_via_assistant()
    rig.start_intercept()
    rig.start_tcpcopy()
    proc = rig.procs[-1]
    rss = RssSampler(_pid(rig))
    base_rss = rss.now()
    gen = rig.spawn("client", [sys.executable, "-m", "labctl.lab.traffic", "--url",
                               f"http://{rig.online}", "--requests", "1600", "--rate", "200",
                               "--mode", "mixed", "--connections", "4", "--post-sizes",
                               "0,65536", "--seq-query", "--json", "--timeout", "20"], "gen")
    time.sleep(2.0)                       # traffic flowing and copied before the stall
    pids = _stall(rig)
    try:
        time.sleep(4.0)
        stalled = rig.stats("tcpcopy")
        assert proc.poll() is None and stalled["state"] == "running"
    finally:
        _resume(pids)
    resumed_at = time.monotonic()
    res = rig.traffic("--requests", "30", "--mode", "new", "--get-paths", "/?after-stall")
    assert not res.get("errors"), res
    sent_in = time.monotonic() - resumed_at
    wait_for(lambda: _copied_uri(rig, "/?after-stall") >= 1, 10, "a first copy after SIGCONT")
    first_in = time.monotonic() - resumed_at
    wait_for(lambda: _copied_uri(rig, "/?after-stall") >= 30, 15, "copies after SIGCONT")
    resumed_in = time.monotonic() - resumed_at
    print(f"P3 sent_in={sent_in:.2f} first_in={first_in:.2f} all_in={resumed_in:.2f}")
    assert gen.wait(60) == 0
    truth = log_requests(rig.lab.host("online").access_log)
    copies = settle(rig, sum(truth.values()), timeout=30)
    peak = rss.stop()
    st = rig.stats("tcpcopy")
    print(f"P3 rss base={base_rss} kB peak={peak} kB resumed_in={resumed_in:.2f} s "
          f"active_during_stall={stalled['sessions_active']} "
          f"fidelity={fidelity(truth, copies):.4f} counters={st['counters']}")
    assert proc.poll() is None and st["state"] == "running"
    assert first_in < 10.0          # includes the client's own start-up and sending time
    assert peak < RSS_CAP_KB, (peak, base_rss)


def test_p4_send_errors_are_counted_never_fatal_and_copying_resumes(rig: Rig) -> None:
    rig.route_pool_via_assistant()
    rig.start_intercept()
    rig.start_tcpcopy()
    proc = rig.procs[-1]
    rule = ["OUTPUT", "-d", rig.target, "-p", "tcp", "--dport", "80", "-j", "DROP"]
    rig.ns("online", ["iptables", "-I", *rule])
    rig.undo.append(["online", "iptables", "-D", *rule])
    try:
        res = rig.traffic("--requests", "300", "--mode", "mixed", "--connections", "3",
                          "--get-paths", "/?blocked", "--post-sizes", "0,2048")
        assert not res.get("errors"), res
        time.sleep(1.0)
        c = rig.stats("tcpcopy").get("counters", {})
        # every send refused: each is counted and retried like a wire loss (RTO backoff), so
        # fewer sends are tried than there are packets; none of them kills the daemon
        assert c.get("send_errors", 0) >= 10 and c.get("send_retried", 0) > 0, c
        assert proc.poll() is None
    finally:
        rig.ns("online", ["iptables", "-D", *rule], check=False)
    blocked_copies = sum(rig.target_copies().values())
    truth_blocked = log_requests(rig.lab.host("online").access_log)
    res = rig.traffic("--requests", "300", "--mode", "mixed", "--connections", "3",
                      "--get-paths", "/?open", "--post-sizes", "0,2048", "--seq-query")
    assert not res.get("errors"), res
    truth = log_requests(rig.lab.host("online").access_log)
    want = truth - truth_blocked          # what was sent after the rule was removed
    copies = settle(rig, sum(truth.values()), timeout=30)
    st = rig.stats("tcpcopy")
    ratio = fidelity(want, copies)
    log = (rig.dir / "tcpcopy.log").read_text()
    print(f"P4 blocked_copies={blocked_copies} after={ratio:.4f} counters={st['counters']}")
    assert proc.poll() is None and st["state"] == "running"
    assert sum(want.values()) == 300    # (blocked copies may still arrive late: retried)
    assert st["counters"]["send_errors"] >= c["send_errors"] > 0
    assert "send to target error" in log and log.count("send to target error") < 30
    assert ratio >= 0.99, (ratio, st["counters"])

