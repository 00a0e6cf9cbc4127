"""Preflight checks (labctl.up.checks), one test module per check family, on constructed facts
(tests/unit/checks_facts.py): every check fires on facts made to trip it and stays quiet on a
healthy lab. `test_every_check_id.py` holds them to it: every id of `labctl.up.checks.CHECK_IDS`
must have fired in a test here (a new check id: add it to CHECK_IDS and a test that trips it,
passing its findings through `fired.ids`)."""
