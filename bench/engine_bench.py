"""Engine benchmark (not a test): ours side by side with the C tcpcopy/intercept, one lab.

    sudo .venv/bin/python bench/engine_bench.py [--against DIR] [--rounds R] [--quick]
        [--out FILE] [--no-pin] [--client-cpu rest|online] [--scenarios NAME,...]
        [--keep-logs DIR] [--lab-prefix h7b] [--ours-python PATH] [--ours-args FLAGS]
        [--ours-tcpcopy-args FLAGS] [--ours-intercept-args FLAGS] [--ours-workers N]

Builds its own lab (name ``<--lab-prefix>NNNN``; 3-server layout: intercept on the assistant,
tcpcopy on online, the fake-client pool routed via the assistant) and runs four scenarios:
paced 1,000 req/s keep-alive (10 connections) and new connection per request, 10 s each
(lab traffic generator); ``wrk -t1 -c10`` keep-alive 20 s; ``wrk -t1 -c50`` with
``Connection: close`` 10 s. ``--against DIR`` (DIR holds the C ``tcpcopy`` and ``intercept``
executables, e.g. from ``bench/build_c_tools.sh``) runs their pair on the same scenarios,
interleaved with ours: each round runs every scenario with ours and theirs, the order of the
two swapped every round. Every run starts a fresh pair, so CPU, RSS and counters are per run.

Per run: requests online vs copies at the target (access-log lines with the run's URI tag),
fidelity (copies/requests), the trail (last copy at the target minus client end), kernel
capture drops, CPU (utime+stime of tcpcopy and intercept from /proc per 10,000 copied requests),
peak RSS (VmHWM). The paced scenarios also run once per round with no copier: the generator's
per-request latency gives online p50/p99/p99.9 with the copier off, theirs, ours. Unless
``--no-pin``, the online nginx (master and worker) runs on the first CPU and everything else
this bench starts (target nginx, copiers, clients) on the second; ``--client-cpu online`` puts
the clients on the online nginx's CPU instead, so that the copiers do not compete with them.
Prints one table with the ratios ours/theirs and writes JSON (``--out``). ``--quick``: every
scenario for 1 s, one round, no thresholds (CI smoke; works without ``--against``).

Our pair: ``--ours-args`` go to both daemons, then ``--ours-tcpcopy-args`` /
``--ours-intercept-args`` to one each; ``--ours-workers N`` adds tcpcopy ``--workers N
--intercept-workers N`` and intercept ``--workers N`` (not together with those flags given by
hand; tcpcopy's ``--intercept-workers`` must equal intercept's ``--workers``: else exit 2).
With workers, CPU is the parent's plus every worker's and RSS the sum of their peaks.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.sidebyside import procs, report  # noqa: E402
from bench.sidebyside.copiers import Copier, Ours, Theirs, check_bindir, flag_int  # noqa: E402
from bench.sidebyside.procs import cpu_split, hwm_mb  # noqa: E402
from bench.sidebyside.scenarios import Scenario, describe_all, run_one, scenarios  # noqa: E402
from labctl.errors import LabctlError  # noqa: E402
from labctl.lab import LabInfo, LabSpec, assert_routes_via_lab, build_lab, destroy_lab  # noqa: E402
from tests.integration.copyrig import Rig  # noqa: E402

__all__ = ["add_ours_flags", "bench_lab", "box", "check_ours_flags", "count_tag", "cpu_split",
           "hwm_mb", "main", "ours", "wait_quiet"]

#: the worker-count flags ``--ours-workers`` sets (tcpcopy's and intercept's)
WORKER_FLAGS = ("--workers", "--intercept-workers")


def count_tag(counter: Any, tag: str) -> int:
    """Requests in a ``log_requests`` multiset whose URI contains ``tag`` (engine_ab, profile)."""
    return sum(n for k, n in counter.items() if tag in k[1])


def wait_quiet(rig: Rig, tag: str, want: int, limit: float = 60.0) -> int:
    """Copies with ``tag`` once there are ``want`` or none came for 3 s (engine_ab, profile)."""
    last, since, start = -1, time.monotonic(), time.monotonic()
    while True:
        n = count_tag(rig.target_copies(), tag)
        now = time.monotonic()
        if n != last:
            last, since = n, now
        if n >= want or now - since > 3.0 or now - start > limit:
            return n
        time.sleep(0.2)


def pin_cpus(pin: bool) -> Optional[Dict[str, Any]]:
    """Pin this process (and so every child it starts) to the second allowed CPU; the online
    nginx is moved to the first once the lab is up. None when not pinning."""
    cpus = sorted(os.sched_getaffinity(0))
    if not pin or len(cpus) < 2:
        return None
    os.sched_setaffinity(0, {cpus[1]})
    return {"online_nginx_cpu": cpus[0], "rest_cpu": cpus[1]}


def pin_online_nginx(lab: LabInfo, pinning: Dict[str, Any]) -> None:
    pid = int((lab.host("online").dir / "nginx.pid").read_text().split()[0])
    pinning["online_nginx_pids"] = procs.pin(procs.descendants(pid),
                                             {pinning["online_nginx_cpu"]})


def box() -> Dict[str, Any]:
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                          capture_output=True, text=True, check=False).stdout.strip()
    dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain",
                            "--untracked-files=no"],
                           capture_output=True, text=True, check=False).stdout.strip()
    return {"commit": head + ("+dirty" if dirty else ""), "kernel": platform.release(),
            "cpus": os.cpu_count(), "python": platform.python_version(),
            "loadavg_before": list(os.getloadavg()), "host": platform.node()}


def chosen(a: argparse.Namespace) -> List[Scenario]:
    return [sc for sc in scenarios(a.quick) if not a.scenarios or sc.name in a.scenarios]


@contextlib.contextmanager
def bench_lab(a: argparse.Namespace) -> Iterator[Tuple[Rig, Optional[Dict[str, Any]]]]:
    """Build the bench's lab (3-server layout, the fake-client pool routed via the
    assistant), pin unless ``--no-pin``, yield (rig, pinning); always destroy the lab (and
    copy the run files to ``--keep-logs``). Shared with ``bench/rate_sweep.py``."""
    pinning = pin_cpus(not a.no_pin)
    name = a.lab_prefix + secrets.token_hex(2)
    workdir = Path(tempfile.mkdtemp(prefix="enginebench-"))
    lab = build_lab(LabSpec(name=name))
    rig = Rig(lab, workdir)
    try:
        assert_routes_via_lab(lab)
        if pinning:
            pin_online_nginx(lab, pinning)
        rig.route_pool_via_assistant()
        yield rig, pinning
    finally:
        rig.close()
        destroy_lab(name)
        if a.keep_logs:
            shutil.copytree(workdir, a.keep_logs, dirs_exist_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)


def ours(a: argparse.Namespace, rig: Rig) -> Ours:
    """Our copier pair as the flags ask (interpreter, common and per-daemon flags)."""
    return Ours(rig, a.ours_python or sys.executable, shlex.split(a.ours_args or ""),
                {"tcpcopy": a.tcpcopy_flags, "intercept": a.intercept_flags})


def run(a: argparse.Namespace) -> Dict[str, Any]:
    result: Dict[str, Any] = {
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]),
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "box": box(),
        "quick": a.quick, "rounds": a.rounds, "against": a.against,
        "scenarios": {k: v for k, v in describe_all(a.quick).items()
                      if not a.scenarios or k in a.scenarios},
    }
    runs: List[Dict[str, Any]] = []
    with bench_lab(a) as (rig, pinning):
        copiers: List[Copier] = [ours(a, rig)]
        if a.against:
            copiers.append(Theirs(rig, Path(a.against)))
        result["versions"] = {c.side: c.versions() for c in copiers}
        client_cpus = None
        if pinning and a.client_cpu == "online":
            client_cpus = {pinning["online_nginx_cpu"]}
            pinning["client_cpu"] = pinning["online_nginx_cpu"]
        quiet = 1.0 if a.quick else 3.0
        limit = 20.0 if a.quick else 180.0
        n = 0
        for rnd in range(a.rounds):
            order = copiers if rnd % 2 == 0 else copiers[::-1]
            for sc in chosen(a):
                sides: List[Optional[Copier]] = [*order]
                if sc.client == "paced":
                    sides.insert(0, None)            # latency with the copier off
                for copier in sides:
                    n += 1
                    row = run_one(rig, sc, copier, f"b{n}r{rnd}", quiet, limit, client_cpus)
                    row["round"] = rnd
                    runs.append(row)
                    print(json.dumps(row), flush=True)
    names = [sc.name for sc in chosen(a)]
    result.update(pinning=pinning, runs=runs, summary=report.summarize(runs, names),
                  latency=report.latency(runs, names),
                  finished_utc=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                  loadavg_after=list(os.getloadavg()))
    return result


def add_ours_flags(p: argparse.ArgumentParser) -> None:
    """The flags that shape our pair (shared with ``bench/rate_sweep.py``)."""
    p.add_argument("--ours-python", metavar="PATH",
                   help="the interpreter that runs our engine (default: this one; e.g. "
                        ".venv-pypy/bin/python for PyPy)")
    p.add_argument("--ours-args", metavar="FLAGS",
                   help="extra flags for both of our daemons, e.g. '--capture-ring-mb 256'")
    p.add_argument("--ours-tcpcopy-args", metavar="FLAGS",
                   help="extra flags for our tcpcopy only (after --ours-args)")
    p.add_argument("--ours-intercept-args", metavar="FLAGS",
                   help="extra flags for our intercept only (after --ours-args)")
    p.add_argument("--ours-workers", type=int, metavar="N",
                   help="N worker processes in both daemons: tcpcopy --workers N "
                        "--intercept-workers N, intercept --workers N")


def check_ours_flags(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    """Split the per-daemon flags into ``a.tcpcopy_flags`` / ``a.intercept_flags``; a bad
    combination is ``p.error`` (exit 2)."""
    split: Dict[str, List[str]] = {}
    for opt, text in (("--ours-args", a.ours_args), ("--ours-tcpcopy-args", a.ours_tcpcopy_args),
                      ("--ours-intercept-args", a.ours_intercept_args)):
        try:
            split[opt] = shlex.split(text or "")
        except ValueError as exc:
            p.error(f"{opt}: {exc}")
    tc, ic = split["--ours-tcpcopy-args"], split["--ours-intercept-args"]
    if a.ours_workers is not None:
        if not 1 <= a.ours_workers <= 64:
            p.error("--ours-workers: must be 1-64")
        for opt, flags in split.items():
            clash = [f for f in flags if f.split("=", 1)[0] in WORKER_FLAGS]
            if clash:
                p.error(f"--ours-workers: {opt} also sets {clash[0].split('=', 1)[0]}; "
                        "give the worker counts one way")
        n = str(a.ours_workers)
        tc = [*tc, "--workers", n, "--intercept-workers", n]
        ic = [*ic, "--workers", n]
    common = split["--ours-args"]
    tc_ic = flag_int([*common, *tc], "--intercept-workers")
    ic_n = flag_int([*common, *ic], "--workers")
    if tc_ic != ic_n:
        p.error(f"--ours-tcpcopy-args: tcpcopy --intercept-workers {tc_ic} but intercept "
                f"--workers {ic_n}; they must be equal (each tcpcopy worker's channel port)")
    a.tcpcopy_flags, a.intercept_flags = tc, ic


def parse_args(argv: Optional[List[str]]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    p.add_argument("--against", metavar="DIR",
                   help="directory with the C tcpcopy and intercept executables to compare with")
    p.add_argument("--rounds", type=int, default=2, help="rounds of every scenario (default 2)")
    p.add_argument("--out", default=str(REPO / "bench" / "engine_bench.json"))
    p.add_argument("--quick", action="store_true", help="1 s per scenario, one round (CI smoke)")
    p.add_argument("--no-pin", action="store_true", help="do not pin processes to CPUs")
    p.add_argument("--client-cpu", choices=("rest", "online"), default="rest",
                   help="where the pinned client (generator, wrk) runs: with the copiers "
                        "(rest, default) or with the online nginx (online)")
    p.add_argument("--scenarios", metavar="NAME,...",
                   help="run only these scenarios (default all: " + ",".join(
                       sc.name for sc in scenarios(False)) + ")")
    p.add_argument("--keep-logs", metavar="DIR",
                   help="copy the daemons' logs, stats and client output of every run to DIR")
    p.add_argument("--lab-prefix", default="h7b", help="lab name prefix (default h7b)")
    add_ours_flags(p)
    a = p.parse_args(argv)
    check_ours_flags(p, a)
    if not re.fullmatch(r"[a-z][a-z0-9]{0,3}", a.lab_prefix):
        p.error("--lab-prefix: 1-4 characters, a lowercase letter then letters/digits "
                "(4 random hex digits are appended to name the lab)")
    if a.scenarios:
        a.scenarios = [x.strip() for x in a.scenarios.split(",") if x.strip()]
        known = {sc.name for sc in scenarios(False)}
        unknown = [x for x in a.scenarios if x not in known]
        if unknown or not a.scenarios:
            p.error(f"--scenarios: unknown {','.join(unknown) or '(empty)'}; "
                    f"choose from {','.join(sorted(known))}")
    if a.rounds < 1:
        p.error("--rounds: must be at least 1")
    if a.quick:
        a.rounds = 1
    if a.against:
        a.against = str(Path(a.against).resolve())
        problem = check_bindir(Path(a.against))
        if problem:
            p.error(problem)
    return a


def run_main(prog: str, a: argparse.Namespace, run: Callable[[argparse.Namespace], Any],
             render: Callable[[Any], str]) -> int:
    """A lab bench's main: root or exit 2; ``run(a)``; a failure is one line on stderr and exit
    1 (the lab is removed by ``run`` either way); the result as JSON in ``a.out``, printed."""
    if os.geteuid() != 0:
        print(f"{prog}: needs root (builds a network-namespace lab)", file=sys.stderr)
        return 2
    try:
        result = run(a)
    except LabctlError as exc:
        print(f"{prog}: {exc.message}", file=sys.stderr)
        return 1
    except (RuntimeError, AssertionError) as exc:      # a copier did not start (lab is gone)
        print(f"{prog}: {exc}", file=sys.stderr)
        return 1
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(render(result))
    print(f"JSON: {a.out}")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    return run_main("engine_bench", parse_args(argv), run,
                    lambda result: report.table(result["summary"], result["latency"]))


if __name__ == "__main__":
    sys.exit(main())
