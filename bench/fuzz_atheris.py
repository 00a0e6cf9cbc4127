"""F1's coverage-guided run (RELIABILITY.md): atheris (libFuzzer) drives the fuzz targets of
``tests/unit/fuzz/`` with the code of ``engine`` and ``labctl`` instrumented (not a test).

    .venv/bin/python bench/fuzz_atheris.py --list
    .venv/bin/python bench/fuzz_atheris.py TARGET [--limit-ms 100] [--corpus DIR]
        [-- LIBFUZZER_FLAGS...]        # e.g. -- -runs=200000 -max_total_time=600

Each target is one hypothesis test of ``tests/unit/fuzz/`` run through its
``.hypothesis.fuzz_one_input``: libFuzzer's bytes choose the test's example, so the rules are the
test's own (only the documented exception escapes; an input handled in under ``--limit-ms``,
wall time, a slow pure parser timed up to three times). Coverage of ``engine`` and ``labctl``
guides the mutations. An input that breaks a rule stops the run with the test's assertion or
the escaped exception, and libFuzzer writes it to ``crash-*`` (in the current directory, or
``-artifact_prefix=DIR/``). ``--replay FILE`` runs that file through the target again and
prints the calls it made (the parser's arguments): keep them as a regression file under
``tests/fixtures/fuzz/<target>/`` (see ``replay`` in ``tests/unit/fuzz/test_kept.py``) or as a
unit test. Instrumented code runs several times slower than plain Python: a run on a busy box
may need ``--limit-ms`` raised, which the printed slowest times then say. atheris comes with
the dev extras where it has a wheel (x86-64, CPython 3.11); elsewhere ``pip install atheris``
needs clang.

Exit status: 0 when the run ended without a finding, libFuzzer's (1, or 77 for a timeout)
otherwise; 2 for a bad target or missing atheris.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

REPO = Path(__file__).resolve().parents[1]

#: where the fuzz tests live; SHARED holds the F1 time limit and the slowest-input table
PACKAGE = "tests.unit.fuzz"
SHARED = f"{PACKAGE}.shared"

#: target -> the hypothesis test it runs (no fixture arguments), as module.test in PACKAGE
TARGETS: Dict[str, str] = {
    "header": "test_wire.test_header_fields_raise_only_packet_error",
    "session": "test_wire.test_session_intake_never_raises",
    "pcap": "test_wire.test_pcap_reader_raises_only_pcap_error",
    "channel-client": "test_wire.test_client_channel_decoder_never_raises",
    "channel-server": "test_wire.test_server_channel_decoder_never_raises",
    "http": "test_text.test_http_framer_frames_every_byte_once",
    "logline": "test_text.test_log_line_parser_raises_only_value_error",
    "logformat": "test_text.test_custom_log_formats_raise_only_value_error",
    "inventory": "test_text.test_inventory_loader_raises_only_inventory_error",
    "runbook": "test_text.test_runbook_loader_raises_only_runbook_error",
}


def parse(argv: List[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0] if __doc__ else None)
    p.add_argument("target", nargs="?", help="one of --list")
    p.add_argument("--list", action="store_true", help="print the targets and exit")
    p.add_argument("--limit-ms", type=float, default=100.0,
                   help="the per-input time limit (default 100, the F1 rule)")
    p.add_argument("--corpus", help="libFuzzer corpus directory (created; kept between runs)")
    p.add_argument("--replay", metavar="FILE",
                   help="run one input file (e.g. a crash-* file) and print the calls it made")
    p.epilog = "after --: flags for libFuzzer (-runs=N, -max_total_time=S, -seed=N, ...)"
    ours, libfuzzer = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) \
        if "--" in argv else (argv, [])
    a = p.parse_args(ours)
    a.libfuzzer = libfuzzer
    return a


def target_module(name: str, limit_s: float) -> Tuple[Any, str]:
    """Import the module of target ``name`` (and the shared one, whose LIMIT_S its tests'
    ``timed`` reads, set to ``limit_s``); the module and the test's name in it."""
    sys.path.insert(0, str(REPO))
    module, _, test = TARGETS[name].rpartition(".")
    mod: Any = importlib.import_module(f"{PACKAGE}.{module}")
    shared: Any = importlib.import_module(SHARED)
    shared.LIMIT_S = limit_s
    return mod, test


def load_target(name: str, limit_s: float) -> Callable[[bytes], Any]:
    """Import the target's module with engine and labctl instrumented; its test's byte-driven
    entry."""
    import atheris  # optional dependency, imported only by this script

    with atheris.instrument_imports(include=["engine", "labctl"]):
        mod, test = target_module(name, limit_s)  # must be imported under instrumentation
    fn: Callable[[bytes], Any] = getattr(mod, test).hypothesis.fuzz_one_input
    return fn


def reporting(one_input: Callable[[bytes], Any], every: int = 20000) -> Callable[[bytes], Any]:
    """``one_input`` that prints the slowest input so far every ``every`` inputs (libFuzzer
    ends the process itself, so there is no end to print at)."""
    slowest: Dict[str, float] = importlib.import_module(SHARED).SLOWEST  # loaded by load_target
    count = 0

    def run(data: bytes) -> Any:
        nonlocal count
        count += 1
        if count % every == 0:
            print(f"after {count} inputs, slowest (ms): " + ", ".join(
                f"{k}={v * 1000:.1f}" for k, v in sorted(slowest.items())),
                file=sys.stderr, flush=True)
        return one_input(data)
    return run


def replay(name: str, path: Path, limit_s: float) -> int:
    """Run one input through the target (not instrumented), printing each parser call with
    its arguments; 1 when the input still breaks a rule, 0 when it passes now. The spy
    replaces ``timed`` where the target's test looks it up: the name in its own module."""
    mod, test = target_module(name, limit_s)  # the plain module: nothing to instrument here
    timed = mod.timed

    def spy(target: str, fn: Callable[..., Any], *args: Any, tries: int = 1) -> Any:
        print(f"{target}: {getattr(fn, '__qualname__', fn)}{args!r}"[:4000])
        return timed(target, fn, *args, tries=tries)

    mod.timed = spy
    try:
        getattr(mod, test).hypothesis.fuzz_one_input(path.read_bytes())
    except Exception as exc:
        print(f"breaks a rule: {type(exc).__name__}: {exc}"[:2000])
        return 1
    print("passes")
    return 0


def main(argv: List[str]) -> int:
    a = parse(argv)
    if a.list:
        print("\n".join(f"{k:15} {v}" for k, v in TARGETS.items()))
        return 0
    if a.target not in TARGETS:
        print(f"fuzz_atheris: unknown target {a.target!r}; one of: {', '.join(TARGETS)}",
              file=sys.stderr)
        return 2
    if a.replay:
        return replay(a.target, Path(a.replay), a.limit_ms / 1000.0)
    try:
        import atheris  # optional dependency
    except ImportError:
        print("fuzz_atheris: atheris is not installed (.venv/bin/pip install atheris)",
              file=sys.stderr)
        return 2
    flags = list(a.libfuzzer)
    if a.corpus:
        Path(a.corpus).mkdir(parents=True, exist_ok=True)
        flags.append(a.corpus)
    one_input = load_target(a.target, a.limit_ms / 1000.0)
    atheris.Setup([sys.argv[0], *flags], reporting(one_input))
    atheris.Fuzz()              # runs until a finding or the flags' bound, then exits itself
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
