"""labctl.transport.batch: several argvs in one round trip, split back byte for byte."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

from hypothesis import given
from hypothesis import strategies as st

from labctl.facts import gather_host_facts
from labctl.hosts.journal import take_snapshot
from labctl.inventory.load import load_inventory
from labctl.transport import FakeTransport, LocalTransport
from labctl.transport.base import Result
from labctl.transport.batch import (
    batch_argv,
    frame,
    new_token,
    run_batch,
    run_chain,
    split,
    unbatch_argv,
    unchain_argv,
)
from tests.unit.test_facts_gather import scripted

ROOT = Path(__file__).resolve().parents[2]
ARGVS = [("echo", "hi there"), ("sh", "-c", "printf x; echo oops >&2; exit 3"),
         ("labctl-no-such-tool",), ("printf", "%s", 'a b $(x) "q" `y` ;'),
         ("printf", "two\n\n")]


def test_local_shell_runs_each_argv_verbatim() -> None:
    results = run_batch(LocalTransport("local"), ARGVS)
    assert results is not None
    assert [r.argv for r in results] == ARGVS
    assert results[0].stdout == "hi there\n" and results[0].exit_code == 0
    assert (results[1].stdout, results[1].stderr, results[1].exit_code) == ("x", "oops\n", 3)
    assert results[2].exit_code == 127  # missing tool: as if run alone
    assert results[3].stdout == 'a b $(x) "q" `y` ;'  # arguments are never shell-expanded
    assert results[4].stdout == "two\n\n"


text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@given(st.lists(st.tuples(text, text, st.integers(0, 255)), min_size=1, max_size=5))
def test_frame_then_split_round_trips(outs: list[tuple[str, str, int]]) -> None:
    token = new_token()
    argvs = [("cmd", str(i)) for i in range(len(outs))]
    results = [Result("h", a, code, out, err) for a, (out, err, code) in zip(argvs, outs)]
    got = split(Result("h", ("sh",), 0, frame(results, token)), argvs, token)
    assert got == results


def test_incomplete_output_is_not_a_batch() -> None:
    token = new_token()
    argvs = [("a",), ("b",)]
    whole = frame([Result("h", ("a",), 0, "1"), Result("h", ("b",), 0, "2")], token)
    assert split(Result("h", ("sh",), 0, whole[:-5]), argvs, token) is None
    assert split(Result("h", ("sh",), 125, ""), argvs, token) is None
    assert unbatch_argv(batch_argv(argvs, token)) == (token, argvs)
    assert unbatch_argv(("sh", "-c", "true")) is None


class Counting(FakeTransport):
    """Counts the round trips: a batch counts once, the argvs inside it not at all."""

    round_trips: int = 0
    depth: int = 0

    def run(self, argv: Sequence[str], *, sudo: bool = True, timeout: Optional[float] = None,
            stdin: Optional[str] = None) -> Result:
        self.round_trips += self.depth == 0
        self.depth += 1
        try:
            return super().run(argv, sudo=sudo, timeout=timeout, stdin=stdin)
        finally:
            self.depth -= 1


def _counting(name: str) -> Any:
    fake = Counting(name)
    fake._rules = scripted(name)._rules
    return fake


def test_host_facts_take_two_round_trips() -> None:
    inv = load_inventory(ROOT / "inventories/staging.yaml")
    fake = _counting("target")
    facts = gather_host_facts(fake, inv.targets[0], "target", inv)
    assert facts.unknown == {} and facts.iptables is not None and facts.proc is not None
    assert len(fake.commands) >= 11  # every fact still ran ...
    assert fake.round_trips == 2  # ... in one batch without sudo and one with


def test_snapshot_is_one_round_trip() -> None:
    fake = _counting("target")
    fake.on(["ip", "route", "show", "table", "all"], stdout="default via 10.77.1.254\n")
    snap = take_snapshot(fake)
    assert snap.routes.strip() and "COMMIT" in snap.iptables
    assert fake.round_trips == 1


class Outer(FakeTransport):
    """Records the sudo flag of each round trip (the batch wrapper) as well."""

    outer: list[bool] = []
    inner_argvs: list[tuple[str, ...]] = []

    def run(self, argv: Sequence[str], *, sudo: bool = True, timeout: Optional[float] = None,
            stdin: Optional[str] = None) -> Result:
        if unbatch_argv(tuple(argv)) is not None:
            self.outer.append(sudo)
            inner = unbatch_argv(tuple(argv))
            assert inner is not None
            self.inner_argvs = inner[1]
        return super().run(argv, sudo=sudo, timeout=timeout, stdin=stdin)


def test_a_sudo_host_runs_sudo_per_argv_inside_a_shell_it_runs_as_itself() -> None:
    """Sudo rights for the programs, never for `sh`: the batch is the login user's shell and
    each argv inside it is `sudo -n -- ARGV`."""
    fake = Outer("web", sudo_user=True)
    fake.outer = []
    fake.on(["iptables-save"], stdout="*filter\nCOMMIT\n").on(["id", "-u"], stdout="1000\n")
    results = run_batch(fake, [("iptables-save",), ("id", "-u")])
    assert results is not None and [r.argv for r in results] == [("iptables-save",), ("id", "-u")]
    assert results[0].stdout == "*filter\nCOMMIT\n"
    assert fake.outer == [False]
    assert fake.inner_argvs == [("sudo", "-n", "--", "iptables-save"),
                                ("sudo", "-n", "--", "id", "-u")]
    assert [(c.argv, c.sudo) for c in fake.calls] == [(("iptables-save",), True),
                                                      (("id", "-u"), True)]
    # not privileged: no sudo inside, the wrapper itself unprivileged
    fake.outer = []
    assert run_batch(fake, [("id", "-u")], sudo=False) is not None
    assert fake.outer == [False] and fake.inner_argvs == [("id", "-u")]
    # a root login (no sudo wanted): the wrapper carries the flag as before
    root = Outer("db")
    root.outer = []
    root.on(["id", "-u"], stdout="0\n")
    assert run_batch(root, [("id", "-u")]) is not None and root.outer == [True]


def test_a_chain_stops_at_the_first_failure_and_feeds_stdin_to_one_argv(tmp_path: Path) -> None:
    out = tmp_path / "journal.json"
    argvs = [("sh", "-c", 'cat > "$1"', "sh", str(out)), ("cat",), ("printf", "%s", 'a "b" $c'),
             ("sh", "-c", "echo no >&2; exit 4"), ("touch", str(tmp_path / "never"))]
    got = run_chain(LocalTransport("local"), argvs, stdin="the text\n")
    assert got is not None and [r.argv for r in got] == argvs[:4]
    assert out.read_text() == "the text\n"
    assert got[1].stdout == "" and got[2].stdout == 'a "b" $c'   # only argv 0 read stdin
    assert (got[3].exit_code, got[3].stderr) == (4, "no\n")
    assert not (tmp_path / "never").exists()
    whole = run_chain(LocalTransport("local"), [("true",), ("echo", "x")], stdin=None)
    assert whole is not None and [r.stdout for r in whole] == ["", "x\n"]


def test_a_chain_cut_by_its_timeout_reports_the_argv_it_was_running() -> None:
    token = new_token()
    argvs = [("true",), ("sleep", "9"), ("true",)]
    ran = frame([Result("h", argvs[0], 0)], token) + f"{token} out\n"
    got = split(Result("h", ("sh",), 124, ran, "labctl: timed out after 1s"), argvs, token,
                prefix=True)
    assert got is not None and [(r.argv, r.exit_code) for r in got] == [
        (argvs[0], 0), (argvs[1], 124)]
    assert split(Result("h", ("sh",), 0, ran), argvs, token, prefix=True) is None
    assert split(Result("h", ("sh",), 125, ""), argvs, token, prefix=True) is None


def test_the_fake_answers_a_chain_like_a_host() -> None:
    fake = FakeTransport("h")
    fake.on(["a"]).on(["b"], exit_code=1)
    got = run_chain(fake, [["sh", "-c", 'umask 077 && cat > "$1" && mv -f "$1" "$2"', "sh",
                            "/j.tmp", "/j"], ["a"], ["b"], ["c"]], stdin="J")
    assert got is not None and [r.exit_code for r in got] == [0, 0, 1]
    assert fake.files["/j"] == b"J" and unchain_argv(("sh", "-c", "true")) is None
    assert fake.commands[1:] == [("a",), ("b",)]

