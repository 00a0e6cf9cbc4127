"""F1 (RELIABILITY.md): coverage-guided fuzzing of every parser that reads untrusted input.

Hypothesis drives each parser with random and mutated-valid input; every test asserts the two
F1 rules: only the parser's documented exception escapes (or none, where the API says "never
raises"), and each input is handled in under ``LIMIT_S`` (100 ms).

- ``shared.py``: the rules' bookkeeping (``timed``, ``LIMIT_S``, ``SLOWEST``), the byte
  mutator (``mutate``/``EDITS``), the ``FUZZ`` settings; ``conftest.py`` prints the slowest
  input per target once, after the package's last test.
- ``test_wire.py``: packet headers, session intake, the capture-file reader, channel decoders.
- ``test_text.py``: the HTTP request framer, access-log lines, inventory and runbook loaders.
- ``test_kept.py``: kept crashers replayed.

- CI: ``python -m pytest tests/unit/fuzz`` runs ``FUZZ_EXAMPLES`` (default 150) examples
  per target, the whole package in well under a minute.
- Long run, by command: ``FUZZ_EXAMPLES=100000 python -m pytest tests/unit/fuzz -q``.

A crasher is kept as a regression file under ``tests/fixtures/fuzz/<target>/`` (raw bytes, or
UTF-8 text for the text parsers) and replayed by ``test_kept_crashers_stay_fixed``.

The time limit is a wall-clock one on a shared box: an input over the limit is timed twice more
and only the fastest of the three counts (a scheduler pause is not the parser's cost).

``bench/fuzz_atheris.py`` runs the hypothesis tests of ``test_wire``/``test_text`` coverage-guided:
it sets ``shared.LIMIT_S``, reads ``shared.SLOWEST`` and, for ``--replay``, replaces the name
``timed`` in the target test's module, so a test calls ``timed`` by that name in its own module.
"""
