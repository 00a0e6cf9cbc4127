"""The F2, P1 and P3 reliability rows as functions of their scale (RELIABILITY.md, issue 13).

One implementation for both sizes: the lab tests (``test_robustness_malformed``,
``test_robustness_pressure``) run each row at the scale a shared 2-core box finishes in a
minute and assert on what it returns; ``bench/reliability_full.py`` runs the same functions at
the issue's full scale and checks the row's pass criteria. Each ``row_*`` function takes a
``Rig`` (tcpcopy + intercept in one lab, ``copyrig``), does the traffic, the injection and the
measurement, and returns its figures as a dict; it asserts only what it needs to go on.

- F2 (``row_f2``): hostile frames injected with scapy during a live copy; the injector runs
  tcpcopy's own kernel filter on every frame, so the frames that reach user space are known.
- P1 (``row_p1``): a flood of SYNs from distinct fake tuples (checksum 0: online's kernel drops
  them, no client RST ever ends a session) against ``--max-sessions``/``-m``.
- P3 (``row_p3``): the target's nginx SIGSTOPped for a while during traffic, then SIGCONT.

``Sampler`` watches tcpcopy meanwhile: VmRSS (peak, series) and the longest gap between two
updates of its stats file (written by the event loop every 0.2 s: a gap is a stalled loop).

Modules: ``measure`` (the sampler, counters, waiting, the traffic generator), ``hostile`` (F2:
the scapy injector), ``pressure`` (P1 and P3).
"""
