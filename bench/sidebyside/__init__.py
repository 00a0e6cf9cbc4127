"""The side-by-side engine benchmark behind ``bench/engine_bench.py`` (a script, not a test).

* ``procs``: what the bench reads of a process it started (CPU, peak RSS, raw-socket drops, TCP
  state of its namespace) and CPU pinning.
* ``copiers``: how a copier pair is started and stopped: ours (``python -m engine``) and theirs
  (the C ``tcpcopy`` + ``intercept`` binaries in ``--against DIR``).
* ``scenarios``: the four load scenarios and one measured run of a scenario with one copier (or
  none, for the latency baseline).
* ``report``: means per scenario and side, ratios ours/theirs, the printed tables.
"""
