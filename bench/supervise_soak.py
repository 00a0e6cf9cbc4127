#!/usr/bin/env python3
"""Supervision soak: `labctl up --supervise` on a built-in lab, paced new-connection traffic,
tcpcopy killed (SIGKILL) twice and intercept once, then `down`.

    sudo .venv/bin/python bench/supervise_soak.py [--duration 600] [--rate 500]
        [--workers N] [--lab-prefix sv] [--out FILE]

Builds its own lab (`<prefix>NNNN`, destroyed at the end even on failure), kills the daemons at
a quarter, half and three quarters of the run (tcpcopy, tcpcopy, intercept; by their pidfiles
and checked command lines, never by name; with `--workers N` > 1, `engine.workers: N` and the
victim is one worker of the daemon, a child process found by its parent pid: the daemon must
stop its other workers and be restarted whole) and measures:
- each restart: seconds from the kill to a new daemon process (goal < 3 s), and to the copy
  path being whole again (tcpcopy connected to the restarted intercept): the outage window;
- the copy ratio of the requests outside the outage windows (goal >= 99.9 %; the online and
  target access logs matched by `?seq=N`, 1-s log times, so each window is widened by 1 s);
- the restarts `labctl status --json` counts; tcpcopy's RSS every few seconds, flat within
  +-10 % of its median after warm-up (the last incarnation, after its first 20 %);
- `down`: exit 0, nothing tagged left, no process of any pidfile (or worker) alive.
Prints the figures and one JSON document (also to --out); exit 1 when a goal is missed.
The CI variant (tests/integration/test_up_supervise.py) calls `soak()` for 30 s at 200 req/s.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from labctl.lab import LabInfo, LabSpec, assert_routes_via_lab, build_lab, destroy_lab  # noqa: E402
from tests.integration.test_up_down_helpers import (  # noqa: E402
    labctl,
    pool_prefix,
    snapshot,
    tagged,
    write_inventory,
)

RESTART_GOAL = 3.0
RATIO_GOAL = 0.999
RSS_BAND = 0.10
LINE = re.compile(r"^(\S+) \[([^\]]+)\] \"\S+ \S*[?&]seq=(\d+)")


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _json(path: Path) -> Optional[Dict[str, Any]]:
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


class Daemon:
    """One daemon's files in the lab's state directory; its pid only when /proc agrees."""

    def __init__(self, hdir: Path, name: str) -> None:
        self.name = name
        self.pid_file = hdir / f"{name}.pid"
        self.stats_file = hdir / f"{name}.stats"
        self.sup_pid_file = hdir / f"{name}.supervisor.pid"
        self.sup_state = hdir / f"{name}.supervisor.json"

    @staticmethod
    def _checked(pid_file: Path, *words: str) -> Optional[int]:
        text = _read(pid_file).strip()
        if not text.isdigit():
            return None
        try:
            cmd = Path(f"/proc/{text}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            return None
        return int(text) if all(w in cmd for w in words) else None

    def pid(self) -> Optional[int]:
        return self._checked(self.pid_file, self.name, str(self.stats_file))

    def supervisor_pid(self) -> Optional[int]:
        return self._checked(self.sup_pid_file, "supervise", str(self.sup_state))

    def stats(self) -> Dict[str, Any]:
        return _json(self.stats_file) or {}

    def rss_kb(self) -> Optional[int]:
        pid = self.pid()
        for line in _read(Path(f"/proc/{pid}/status")).splitlines() if pid else []:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        return None


def wait_for(what: str, check: Callable[[], Any], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def children(pid: int) -> List[int]:
    """The processes whose parent is `pid` (a daemon's workers)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[1] == str(pid) and fields[0] != "Z":
                found.append(int(entry.name))
    return sorted(found)


def kill_and_wait(victim: Daemon, tcpcopy: Daemon, intercept: Daemon,
                  workers: int = 1) -> Dict[str, Any]:
    """SIGKILL `victim` (by pidfile + cmdline), or with `workers` > 1 its last worker; times
    until a new daemon process runs and until the copy path is whole again."""
    old = wait_for(f"{victim.name} running", victim.pid, 30)
    killed, siblings = old, []
    if workers > 1:
        def all_workers() -> Optional[List[int]]:
            found = children(old)
            return found if len(found) == workers else None

        pids = wait_for(f"{victim.name}'s {workers} workers", all_workers, 30)
        killed, siblings = pids[-1], pids[:-1]
    t0 = time.time()
    os.kill(killed, signal.SIGKILL)
    new = wait_for(f"{victim.name} restarted", lambda: (p := victim.pid()) and p != old and p,
                   30)
    restarted = time.time() - t0

    def whole() -> bool:
        ts, ist = tcpcopy.stats(), intercept.stats()
        tpid, ipid = tcpcopy.pid(), intercept.pid()
        conns = [int(i.get("connections", 0)) for i in ts.get("intercepts") or []]
        return bool(tpid and ipid and ts.get("pid") == tpid and ist.get("pid") == ipid
                    and conns and all(conns) and int(ist.get("clients") or 0) >= 1)

    wait_for("the copy path whole again", whole, 60)
    return {"daemon": victim.name, "old_pid": old, "new_pid": new, "killed_at": t0,
            "killed_pid": killed, "worker_pids": siblings + ([killed] if workers > 1 else []),
            "restart_s": round(restarted, 3), "restored_s": round(time.time() - t0, 3)}


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


def copy_figures(info: LabInfo, windows: List[Tuple[float, float]]) -> Dict[str, Any]:
    """Requests (by seq) on online vs. copies on the target, inside and outside the windows."""
    prefix = pool_prefix(info)
    sent: Dict[int, float] = {}
    for line in _read(Path(info.hosts["online"].access_log)).splitlines():
        m = LINE.match(line)
        if m and not m.group(1).startswith(prefix):
            sent[int(m.group(3))] = _epoch(m.group(2))
    copied = {int(m.group(3)) for m in map(LINE.match,
                                           _read(Path(info.hosts["target"].access_log))
                                           .splitlines()) if m and m.group(1).startswith(prefix)}

    def inside(t: float) -> bool:   # logged in second [t, t+1): widen each window by 1 s
        return any(t <= end + 1.0 and t + 1.0 >= start - 1.0 for start, end in windows)

    outside = [s for s, t in sent.items() if not inside(t)]
    during = [s for s, t in sent.items() if inside(t)]
    last_end = max((end for _, end in windows), default=0.0)
    after = [s for s, t in sent.items() if t >= last_end + 1.0]
    got = len([s for s in outside if s in copied])
    return {
        "sent": len(sent), "copied": len(copied & set(sent)),
        "outside_windows": len(outside), "outside_copied": got,
        "outside_ratio": round(got / len(outside), 5) if outside else None,
        "during_windows": len(during),
        "during_copied": len([s for s in during if s in copied]),
        "after_last_restore": len(after),
        "after_last_restore_missing": len([s for s in after if s not in copied]),
    }


def settle(info: LabInfo, timeout: float = 30.0) -> None:
    """Until the target's log stops growing for 2 s (the last copies arrived)."""
    path = Path(info.hosts["target"].access_log)
    deadline = time.monotonic() + timeout
    size, since = -1, time.monotonic()
    while time.monotonic() < deadline:
        now = path.stat().st_size if path.exists() else 0
        if now != size:
            size, since = now, time.monotonic()
        elif time.monotonic() - since >= 2.0:
            return
        time.sleep(0.2)


def soak(info: LabInfo, tmp: Path, duration: float, rate: float,
         say: Callable[[str], None] = print, workers: int = 1) -> Dict[str, Any]:
    """The whole run on a built lab; returns the figures (the lab is left as it was)."""
    def edit(text: str) -> str:
        assert "datalink: false" in text
        return text.replace("datalink: false", f"datalink: false, workers: {workers}")

    inv = write_inventory(info, tmp, edit=edit if workers > 1 else None)
    before = snapshot(info)
    t_up = time.monotonic()
    up = labctl(tmp, "up", "--supervise", str(inv), timeout=300)
    if up.returncode != 0:
        raise AssertionError(f"up --supervise exited {up.returncode}: {up.stdout[-2000:]}"
                             f"{up.stderr[-2000:]}")
    result: Dict[str, Any] = {"duration_s": duration, "rate": rate, "workers": workers,
                              "up_s": round(time.monotonic() - t_up, 2)}
    try:
        run_traffic(info, tmp, duration, rate, result, say, workers)
    finally:
        t_down = time.monotonic()
        down = labctl(tmp, "down", "--json", timeout=180)
        result["down_s"] = round(time.monotonic() - t_down, 2)
        result["down_ok"] = down.returncode == 0
    found = [d for d in result["daemons"] if _checked(*d)]
    result["left_processes"] = [" ".join(d[1:]) for d in found]
    result["left_tagged"] = tagged(info)
    result["restored"] = snapshot(info) == before
    result["goals"] = goals(result)
    return result


def _checked(pid: Optional[int], *words: str) -> bool:
    """`pid` runs and its command line has every word (a pid reused by another process is not
    ours)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return False
    return all(w in cmd for w in words)


def run_traffic(info: LabInfo, tmp: Path, duration: float, rate: float,
                result: Dict[str, Any], say: Callable[[str], None], workers: int = 1) -> None:
    """Traffic, the kills, RSS, the copy figures and the restarts `status` counts."""
    state = Path(info.dir) / "state"
    hdirs = {p.parent.name: p.parent for p in state.glob("*/*/journal.json")}
    tcpcopy = Daemon(next(d for d in hdirs.values() if (d / "tcpcopy.stats").exists()),
                     "tcpcopy")
    intercept = Daemon(next(d for d in hdirs.values() if (d / "intercept.stats").exists()),
                       "intercept")
    result["supervisors"] = {d.name: d.supervisor_pid() for d in (tcpcopy, intercept)}
    # every process down must end: the supervisors and the first daemons, by pid and cmdline
    result["daemons"] = [(d.supervisor_pid(), "supervise", str(d.sup_state))
                         for d in (tcpcopy, intercept)]
    traffic = subprocess.Popen(
        [*info.ns_argv("client"), sys.executable, "-m", "labctl.lab.traffic", "--url",
         f"http://{info.hosts['online'].address}", "--requests", str(int(rate * duration)),
         "--rate", str(rate), "--mode", "new", "--connections", "8", "--seq-query", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)})
    kills: List[Dict[str, Any]] = []
    rss: List[Tuple[float, int]] = []
    active: List[Tuple[float, Any]] = []   # tcpcopy's sessions_active beside each sample
    start, start_wall = time.monotonic(), time.time()
    plan = [(duration * 0.25, tcpcopy), (duration * 0.5, tcpcopy), (duration * 0.75, intercept)]
    try:
        while traffic.poll() is None or plan:
            elapsed = time.monotonic() - start
            if plan and elapsed >= plan[0][0]:
                _, victim = plan.pop(0)
                kills.append(kill_and_wait(victim, tcpcopy, intercept, workers))
                result["daemons"] += [(pid, victim.name, str(victim.stats_file))
                                      for pid in (kills[-1]["new_pid"], kills[-1]["old_pid"],
                                                  *kills[-1]["worker_pids"])]
                what = "a worker of " if workers > 1 else ""
                say(f"killed {what}{victim.name}: restarted in {kills[-1]['restart_s']:.2f} s, "
                    f"copy path whole in {kills[-1]['restored_s']:.2f} s")
                continue
            value = tcpcopy.rss_kb()
            if value:
                rss.append((round(elapsed, 1), value))
                active.append((round(elapsed, 1), tcpcopy.stats().get("sessions_active")))
            if elapsed > duration * 3 + 120:
                raise AssertionError("the traffic did not finish in time")
            time.sleep(min(2.0, max(0.05, duration / 100)))
        out, err = traffic.communicate()
        if traffic.returncode != 0:
            raise AssertionError(f"traffic exited {traffic.returncode}: {err[-1000:]}")
        result["traffic"] = {k: v for k, v in json.loads(out).items()
                             if k in ("sent", "ok", "errors", "rate", "elapsed_s")}
    finally:
        if traffic.poll() is None:
            traffic.kill()
            traffic.wait()
    settle(info)
    windows = [(k["killed_at"], k["killed_at"] + k["restored_s"]) for k in kills]
    result["kills"] = kills
    result["copy"] = copy_figures(info, windows)
    last_tcpcopy = max(k["killed_at"] for k in kills if k["daemon"] == "tcpcopy")
    t_last = last_tcpcopy - start_wall
    tail = [v for t, v in rss if t >= t_last + (duration - t_last) * 0.2]
    med = sorted(tail)[len(tail) // 2] if tail else 0
    quarter = max(1, len(tail) // 4)
    first, last = sorted(tail[:quarter]), sorted(tail[-quarter:])
    step = max(1, len(rss) // 80)
    result["rss_kb"] = {"samples": len(rss), "after_warmup": len(tail), "median": med,
                        "min": min(tail, default=0), "max": max(tail, default=0),
                        "flat": bool(tail) and all(abs(v - med) <= RSS_BAND * med
                                                   for v in tail),
                        # the median of the last quarter of the samples over the first's
                        "drift": round(last[len(last) // 2] / first[len(first) // 2], 3)
                        if tail else None,
                        "series": rss[::step], "sessions_active": active[::step]}
    st = labctl(tmp, "status", "--json", timeout=120)
    doc = json.loads(st.stdout) if st.returncode == 0 else {"hosts": []}
    result["status_restarts"] = {d["name"]: d.get("restarts") for h in doc["hosts"]
                                 for d in h["daemons"]}
    prom = labctl(tmp, "status", "--prometheus", timeout=120)
    result["prometheus_restarts"] = [ln for ln in prom.stdout.splitlines()
                                     if "_restarts{" in ln]


def goals(r: Dict[str, Any]) -> Dict[str, bool]:
    ratio = r["copy"]["outside_ratio"]
    return {
        "restart_within_3s": all(k["restart_s"] < RESTART_GOAL for k in r["kills"]),
        "copy_ratio_outside_windows": ratio is not None and ratio >= RATIO_GOAL,
        "restarts_counted": r["status_restarts"] == {"tcpcopy": 2, "intercept": 1},
        "rss_flat": bool(r["rss_kb"]["flat"]),
        "down_clean": bool(r["down_ok"] and not r["left_processes"] and not r["left_tagged"]
                           and r["restored"]),
    }


def report(r: Dict[str, Any]) -> str:
    c, m = r["copy"], r["rss_kb"]
    victim = "a worker of " if r.get("workers", 1) > 1 else ""
    lines = [f"supervision soak: {r['duration_s']:g} s at {r['rate']:g} req/s, "
             f"{r.get('workers', 1)} worker(s) (up {r['up_s']} s, down {r['down_s']} s)"]
    lines += [f"  kill {victim}{k['daemon']:<9} restarted in {k['restart_s']:.2f} s, copy path "
              f"whole in {k['restored_s']:.2f} s" for k in r["kills"]]
    lines.append(f"  requests {c['sent']}, copied {c['copied']}; outside the outage windows "
                 f"{c['outside_copied']}/{c['outside_windows']} = {c['outside_ratio']}; "
                 f"inside {c['during_copied']}/{c['during_windows']}")
    lines.append(f"  tcpcopy RSS after warm-up: {m['min']}..{m['max']} kB (median {m['median']},"
                 f" {m['after_warmup']} samples, last quarter / first quarter "
                 f"{m['drift']}) flat={m['flat']}")
    lines.append(f"  status restarts: {r['status_restarts']}")
    lines.append("  goals: " + ", ".join(f"{k}={'ok' if v else 'MISSED'}"
                                          for k, v in r["goals"].items()))
    return "\n".join(lines)


def main(argv: Optional[List[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--duration", type=float, default=600.0, help="seconds of traffic")
    p.add_argument("--rate", type=float, default=500.0, help="requests per second")
    p.add_argument("--workers", type=int, default=1,
                   help="engine.workers; > 1: each kill is of one worker of the daemon")
    p.add_argument("--lab-prefix", default="sv", help="lab name prefix (1-4 characters)")
    p.add_argument("--out", default=None, help="also write the JSON here")
    a = p.parse_args(argv)
    if not re.fullmatch(r"[a-z][a-z0-9]{0,3}", a.lab_prefix):
        p.error("--lab-prefix: 1-4 characters, a lowercase letter then letters/digits")
    if a.duration < 20 or a.rate <= 0 or not 1 <= a.workers <= 16:
        p.error("--duration: at least 20 s; --rate: more than 0; --workers: 1 to 16")
    name = a.lab_prefix + secrets.token_hex(2)
    info = build_lab(LabSpec(name=name))
    try:
        assert_routes_via_lab(info)
        with tempfile.TemporaryDirectory(prefix="supervise-soak-") as tmp:
            result = soak(info, Path(tmp), a.duration, a.rate, workers=a.workers)
    finally:
        destroy_lab(name)
    print(report(result))
    text = json.dumps(result, indent=1, sort_keys=True)
    print(text)
    if a.out:
        Path(a.out).write_text(text + "\n")
    return 0 if all(result["goals"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
