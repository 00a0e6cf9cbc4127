"""A copier pair (intercept on the assistant, tcpcopy on online), ours or theirs.

Both sides get the same job: intercept captures the target's answers on the assistant's eth0
(``tcp and src port 80``); tcpcopy copies port 80 of online to the target with fake clients
from the rig's pool, which the target routes via the assistant. Each is started in its lab
namespace in the foreground (``ip netns exec`` execs, so the Popen pid is the tool's pid) and
stopped by that pid. "Ready" is read from the namespaces' TCP tables the same way for both:
intercept listens on the channel port, tcpcopy holds an established channel connection.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from bench.sidebyside import procs
from tests.integration.copyrig import Rig, read_json, wait_for

NAMES = ("tcpcopy", "intercept")


class Copier:
    """One side of the comparison; ``start`` → pids, ``stop`` → what is read at the end."""

    side = ""
    #: (tcpcopy workers, intercept workers): tcpcopy is ready when each of its workers holds a
    #: channel connection, intercept when each of its workers listens (port P + j)
    workers = (1, 1)

    def __init__(self, rig: Rig) -> None:
        self.rig = rig
        self.pids: Dict[str, int] = {}
        self.procs: List[subprocess.Popen[bytes]] = []

    def argv(self, tool: str, run: str) -> List[str]:
        raise NotImplementedError

    def start(self, run: str) -> Dict[str, int]:
        ic = self.rig.spawn("assistant", self.argv("intercept", run), f"{run}-intercept")
        self.procs.append(ic)
        n_tc, n_ic = self.workers
        wait_for(lambda: ic.poll() is not None or procs.listens(ic.pid, count=n_ic), 20,
                 f"{self.side} intercept listening")
        tc = self.rig.spawn("online", self.argv("tcpcopy", run), f"{run}-tcpcopy")
        self.procs.append(tc)
        wait_for(lambda: tc.poll() is not None or procs.connected_to(tc.pid, count=n_tc,
                                                                      ports=n_ic), 20,
                 f"{self.side} tcpcopy connected to intercept")
        self.wait_capturing(run, tc)
        for name, p in (("intercept", ic), ("tcpcopy", tc)):
            if p.poll() is not None:
                self.stop()
                out = self.rig.dir / f"{run}-{name}.out"
                tail = out.read_text(errors="replace").strip()[-300:] if out.exists() else ""
                raise RuntimeError(f"{self.side} {name} exited at start (status {p.returncode}): "
                                   + (" / ".join(tail.splitlines()) or "no output"))
        self.pids = {"tcpcopy": tc.pid, "intercept": ic.pid}
        return self.pids

    def wait_capturing(self, run: str, tc: subprocess.Popen[bytes]) -> None:
        """After tcpcopy's channel is up: until its capture is open, where the tool logs it
        (the C tool's is taken as open once its channel is up)."""

    def drops_before_stop(self) -> Dict[str, Optional[int]]:
        return {}

    def final_counters(self, run: str) -> Any:
        """tcpcopy's own counters at the end of a run (after stop), for the JSON."""
        return None

    def stop(self) -> None:
        for p in reversed(self.procs):
            self.rig.stop(p)
        self.procs = []

    def drops_after_stop(self, run: str) -> Dict[str, Optional[int]]:
        return {}

    def versions(self) -> Dict[str, str]:
        return {}


def flag_int(args: Sequence[str], name: str, default: int = 1) -> int:
    """The value of ``name N`` (or ``name=N``) in a daemon's flags, the last one given;
    ``default`` when absent or not a number (the daemon itself then refuses it)."""
    value = default
    for i, arg in enumerate(args):
        text = args[i + 1] if arg == name and i + 1 < len(args) else (
            arg.split("=", 1)[1] if arg.startswith(name + "=") else None)
        if text is not None:
            try:
                value = int(text)
            except ValueError:
                return default
    return value


#: what our tcpcopy (each worker of it) logs once its capture is open
CAPTURING = "send the first packets here"


class Ours(Copier):
    """``python -m engine tcpcopy|intercept`` of this tree, stats every second (the default);
    ``python`` runs it (e.g. a pypy3), ``extra`` flags go to both daemons (e.g. a capture
    ring), then ``per_tool[tool]`` to that one (e.g. ``--workers 2``)."""

    side = "ours"

    def __init__(self, rig: Rig, python: str = sys.executable,
                 extra: Sequence[str] = (),
                 per_tool: Optional[Dict[str, Sequence[str]]] = None) -> None:
        super().__init__(rig)
        self.python, self.extra = python, list(extra)
        self.per_tool = {tool: list((per_tool or {}).get(tool, ())) for tool in NAMES}
        self.workers = (flag_int(self.flags("tcpcopy"), "--workers"),
                        flag_int(self.flags("intercept"), "--workers"))

    def flags(self, tool: str) -> List[str]:
        """The extra flags one daemon gets: the common ones, then its own."""
        return [*self.extra, *self.per_tool[tool]]

    def argv(self, tool: str, run: str) -> List[str]:
        rig = self.rig
        if tool == "intercept":
            args = ["-i", "eth0", "-F", "tcp and src port 80"]
        else:
            args = ["-x", f"80-{rig.target}:80", "-s", rig.assistant, "-c", f"{rig.fake_prefix}x"]
        return [self.python, "-m", "engine", tool, *args, *self.flags(tool),
                "--key-file", str(rig.key),
                "--stats-file", str(rig.dir / f"{run}-{tool}.json"),
                "-l", str(rig.dir / f"{run}-{tool}.log")]

    def wait_capturing(self, run: str, tc: subprocess.Popen[bytes]) -> None:
        # ours also connects first, then opens its capture (filter, sockets, and under PyPy
        # some warm-up): a load started before that line loses its first requests; with
        # --workers N every worker logs it once its own capture is open
        log = self.rig.dir / f"{run}-tcpcopy.log"
        wait_for(lambda: tc.poll() is not None or (
            log.exists() and log.read_text(errors="replace").count(CAPTURING) >= self.workers[0]),
            20, f"ours tcpcopy capturing ({self.workers[0]} of them)")

    def drops_after_stop(self, run: str) -> Dict[str, Optional[int]]:
        out: Dict[str, Optional[int]] = {}
        for tool in NAMES:
            doc = read_json(self.rig.dir / f"{run}-{tool}.json") or {}
            out[tool] = doc.get("counters", {}).get("kernel_drops")
        return out

    def final_counters(self, run: str) -> Any:
        doc = read_json(self.rig.dir / f"{run}-tcpcopy.json") or {}
        return {k: v for k, v in doc.get("counters", {}).items() if v}

    def versions(self) -> Dict[str, str]:
        return {"python": sys.version.split()[0] if self.python == sys.executable else "",
                "executable": self.python, "flags": " ".join(self.extra),
                **{f"{tool}_flags": " ".join(self.per_tool[tool]) for tool in NAMES
                   if self.per_tool[tool]}}


class Theirs(Copier):
    """The C tools in ``bindir``: tcpcopy captures with a raw socket (the default build), so
    its kernel drops are read from /proc/PID/net/raw; intercept captures with libpcap, whose
    drops /proc does not show (reported as None)."""

    side = "theirs"

    def __init__(self, rig: Rig, bindir: Path) -> None:
        super().__init__(rig)
        self.bindir = bindir

    def argv(self, tool: str, run: str) -> List[str]:
        rig = self.rig
        log = str(rig.dir / f"{run}-{tool}.log")
        if tool == "intercept":
            return [str(self.bindir / "intercept"), "-i", "eth0", "-F", "tcp and src port 80",
                    "-l", log]
        return [str(self.bindir / "tcpcopy"), "-x", f"80-{rig.target}:80", "-s", rig.assistant,
                "-c", f"{rig.fake_prefix}x", "-l", log]

    def drops_before_stop(self) -> Dict[str, Optional[int]]:
        return {"tcpcopy": procs.raw_socket_drops(self.pids["tcpcopy"]), "intercept": None}

    def final_counters(self, run: str) -> Any:
        """tcpcopy's last counter lines (it prints them on SIGTERM)."""
        path = self.rig.dir / f"{run}-tcpcopy.log"
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            return None
        keep = [ln for ln in lines if "conns:" in ln or "syn cnt:" in ln or "send syn:" in ln]
        return " | ".join(keep[-3:]) or None

    def versions(self) -> Dict[str, str]:
        out = {}
        for tool in NAMES:
            res = subprocess.run([str(self.bindir / tool), "-v"], capture_output=True,
                                 text=True, timeout=10, check=False)
            out[tool] = (res.stdout + res.stderr).strip().splitlines()[0] if (
                res.stdout + res.stderr).strip() else "?"
        return out


def check_bindir(bindir: Path) -> Optional[str]:
    """A one-line error if ``bindir`` lacks an executable tcpcopy or intercept."""
    for tool in NAMES:
        path = bindir / tool
        if not path.is_file():
            return f"--against {bindir}: no file {tool} in it"
        if not path.stat().st_mode & 0o111:
            return f"--against {bindir}: {tool} is not executable"
    return None

