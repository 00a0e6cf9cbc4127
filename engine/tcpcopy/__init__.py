"""The tcpcopy daemon: flags, wiring and the I/O loop around the sans-I/O session table.

Capture (AF_PACKET + kernel BPF built from ``-x``, or ``-F``; outgoing frames ignored) feeds
``Engine.on_client_packet``; intercept records feed ``Engine.on_response_record``; the engine's
actions go to the raw IP sender (or the ``-o`` link sender) and to the intercept channels.
A send error is counted and sheds its session; the process never exits for it.
``--workers N`` (N > 1): the parent (``engine.workers``) forks N copies of this loop; worker k
joins its capture sockets to one PACKET_FANOUT group per interface, hands out only fake ports
with ``port % N == k`` and talks to intercept port ``P + k % M`` (``--intercept-workers M``).

The package: ``setup`` (from the flags to the parts: session config, kernel filter, senders,
start-up lines), ``daemon`` (the ``Tcpcopy`` loop), ``channel`` (an intercept lost and back:
hold, reconnect, resume), ``cli`` (``main``: flags, ``-d``, pid file, workers).
"""

from engine.tcpcopy.cli import main, run_one
from engine.tcpcopy.daemon import Tcpcopy
from engine.tcpcopy.setup import StartupError, current_rss_kb, session_config

__all__ = ["StartupError", "Tcpcopy", "current_rss_kb", "main", "run_one", "session_config"]
